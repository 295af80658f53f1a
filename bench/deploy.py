"""Benchmark: deploy-to-Running through Stratus vs raw virsh, and no-op jobs per second.

    .venv/bin/python bench/deploy.py [--runs 5] [--jobs 400] [--uri qemu:///system]

1. Deploy: a one-host cloud on a fresh SQLite file (zone, pod, cluster, the libvirtd as
   its host, a dir pool, an image store with a 32 MiB qcow2 made with qemu-img and
   registered through the storage service, a shared network on a bridge made for the
   run, a 1 vCPU / 64 MiB offering). Each round
   times `deploy_vm` until its DeployVM job has the VM Running (job queue pick-up,
   placement with its explanation, IPAM, template inspection and copy into the pool,
   domain XML, define, start, every step recorded), then — the baseline, on the same
   libvirtd — the same work done by hand: `cp` of the same template file into the pool
   directory, then `virsh define` of the same domain XML (name, UUID and MAC changed)
   and `virsh start`. Expunge and cleanup are not timed. Without libvirtd (or without
   root, which the guest bridge needs) the test driver stands in and the note says so.
2. Jobs: no-op jobs through a JobRunner with 4 workers, on distinct resources (parallel)
   and on one resource (one at a time, in order), from submit to Succeeded; the baseline
   is the submit alone (one transaction per job, what a caller pays).

The last line is the figures as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine import offerings, topology  # noqa: E402
from engine.bootstrap import open_cloud  # noqa: E402
from engine.compute import DeployRequest, deploy_vm, destroy_vm  # noqa: E402
from engine.db import Database  # noqa: E402
from engine.hosts import network  # noqa: E402
from engine.hosts.connections import ensure_event_loop  # noqa: E402
from engine.hosts.manager import HostManager  # noqa: E402
from engine.ipam.networks import create_shared_network  # noqa: E402
from engine.ipam.vni import add_vni_range  # noqa: E402
from engine.jobs import JobRunner, register_handler, submit_job  # noqa: E402
from engine.models import VirtualMachine  # noqa: E402
from engine.settings import update_setting  # noqa: E402
from engine.storage import template_path_in_zone  # noqa: E402
from engine.storage.templates import register_template  # noqa: E402

MIB = 2**20
VNI = 3918
BRIDGE = f"brvx{VNI}"


def _qemu_answers(uri: str) -> bool:
    ensure_event_loop()
    try:
        libvirt.open(uri).close()
        return True
    except libvirt.libvirtError:
        return False


def _virsh(uri: str, *commands: str) -> None:
    subprocess.run(["virsh", "-q", "-c", uri, *commands], check=True, capture_output=True)


def _node_uri(work: Path) -> str:
    from engine.demo import Shape

    shape = Shape(
        name="bench",
        cpu_model="Bench CPU",
        sockets=1,
        cores_per_socket=8,
        mhz=2000,
        memory_bytes=16 * 2**30,
    )
    path = work / "node.xml"
    path.write_bytes(shape.node_xml())
    return f"test://{path}"


def _cloud(work: Path, uri: str):  # type: ignore[no-untyped-def]
    cloud = open_cloud(f"sqlite:///{work / 'stratus.db'}")
    admin = cloud.admin
    # Domain names of this run only, on a libvirtd other runs may share.
    update_setting(admin, "instance.name", f"B{uuid.uuid4().hex[:8]}")
    topology.create_zone(admin, "z1", dns1="8.8.8.8")
    topology.create_pod(
        admin,
        "z1",
        "rack-1",
        gateway="10.1.1.1",
        netmask="255.255.255.0",
        start_ip="10.1.1.10",
        end_ip="10.1.1.100",
    )
    cluster = topology.create_cluster(admin, "rack-1", "c1")
    topology.add_hosts(
        admin,
        cluster.uuid,
        [topology.HostSpec(name="h0", uri=uri, cpu_cores=8, cpu_mhz=2000, memory_bytes=16 * 2**30)],
    )
    (work / "primary").mkdir()
    topology.create_storage_pool(
        admin,
        "primary",
        path=str(work / "primary"),
        cluster_ref=cluster.uuid,
        capacity_bytes=100 * 2**30,
    )
    (work / "secondary").mkdir()
    topology.add_image_store(admin, "z1", "sec1", url=str(work / "secondary"))
    made = work / "tiny.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(made), "32M"], check=True)
    register_template(admin, "tiny", zone="z1", source=made, is_public=True)
    template_file, _fmt = template_path_in_zone(cloud.db, "tiny", "z1")
    add_vni_range(admin, "z1", VNI, VNI, isolation="vlan")
    create_shared_network(
        admin,
        "z1",
        "guest",
        gateway="10.50.0.1",
        netmask="255.255.0.0",
        start_ip="10.50.0.10",
        end_ip="10.50.3.250",
        vni=VNI,
    )
    offerings.create_service_offering(
        admin, "tiny", cpu_count=1, cpu_mhz=500, memory_bytes=64 * MIB
    )
    return cloud, template_file


def _baseline_xml(stratus_xml: str, name: str, disk: Path) -> str:
    """The Stratus domain's XML with another name, UUID and MAC, its disk a plain file."""
    root = ET.fromstring(stratus_xml)
    root.find("name").text = name  # type: ignore[union-attr]
    root.find("uuid").text = str(uuid.uuid4())  # type: ignore[union-attr]
    for attr in ("id",):
        root.attrib.pop(attr, None)
    for mac in root.iter("mac"):
        mac.set("address", "02:be:0c:" + ":".join(f"{b:02x}" for b in os.urandom(3)))
    for disk_el in root.iter("disk"):
        if disk_el.get("device") == "disk":
            disk_el.set("type", "file")
            source = disk_el.find("source")
            assert source is not None
            source.attrib.clear()
            source.set("file", str(disk))
    return ET.tostring(root, encoding="unicode")


def bench_deploy(runs: int, uri: str, work: Path) -> dict:
    simulated = uri.startswith("test:")
    cloud, template_file = _cloud(work, uri)
    manager = HostManager(cloud.db)
    hc = None
    stratus_ms: list[float] = []
    virsh_ms: list[float] = []
    try:
        with JobRunner(cloud.db, workers=2, hosts=manager, poll_seconds=0.02) as runner:
            for i in range(runs):
                started = time.perf_counter()
                vm, job = deploy_vm(
                    cloud.admin,
                    DeployRequest(
                        f"bench{i}", zone="z1", offering="tiny", template="tiny", networks=["guest"]
                    ),
                )
                runner.wait(job.uuid, timeout=300, raise_on_failure=True)
                stratus_ms.append((time.perf_counter() - started) * 1000)
                with cloud.db.read() as session:
                    row = session.get(VirtualMachine, vm.id)
                    assert row is not None and row.state == "Running"
                hc = manager.connection(uri)
                xml = hc.call(
                    lambda c, n=vm.instance_name: c.lookupByName(n).XMLDesc(
                        libvirt.VIR_DOMAIN_XML_INACTIVE
                    ),
                    what="read xml",
                )
                if not simulated:
                    name = f"stratus-bench-{uuid.uuid4().hex[:8]}"
                    disk = work / "primary" / f"{name}.qcow2"
                    xml_file = work / f"{name}.xml"
                    xml_file.write_text(_baseline_xml(xml, name, disk))
                    started = time.perf_counter()
                    shutil.copyfile(template_file, disk)
                    _virsh(uri, "define", str(xml_file))
                    _virsh(uri, "start", name)
                    virsh_ms.append((time.perf_counter() - started) * 1000)
                    _virsh(uri, "destroy", name)
                    _virsh(uri, "undefine", name)
                    disk.unlink()
                else:
                    # test driver: its state lives in one connection; the baseline is the
                    # same define + start on the manager's connection, without Stratus.
                    name = f"bench-raw-{i}"
                    raw = _baseline_xml(xml, name, template_file)
                    started = time.perf_counter()
                    hc.call(lambda c, x=raw: c.defineXML(x).create(), what="raw define+start")
                    virsh_ms.append((time.perf_counter() - started) * 1000)
                runner.wait(
                    destroy_vm(cloud.admin, vm.uuid, expunge=True).uuid,
                    timeout=300,
                    raise_on_failure=True,
                )
    finally:
        manager.close()
        cloud.db.dispose()
    s50, v50 = statistics.median(stratus_ms), statistics.median(virsh_ms)
    return {"stratus_ms": stratus_ms, "virsh_ms": virsh_ms, "stratus_p50": s50, "virsh_p50": v50}


def bench_jobs(count: int, work: Path) -> dict:
    register_handler("BenchNoop", lambda ctx: None)
    cloud = open_cloud(f"sqlite:///{work / 'jobs.db'}")
    db: Database = cloud.db
    figures = {}
    try:
        with JobRunner(db, workers=4, poll_seconds=0.01) as runner:
            for label, resource in (("parallel", None), ("one_resource", "vm-one")):
                started = time.perf_counter()
                jobs = [
                    submit_job(
                        cloud.admin,
                        "BenchNoop",
                        resource_type="VirtualMachine",
                        resource_uuid=resource or f"vm-{label}-{i}",
                    )
                    for i in range(count)
                ]
                submitted = time.perf_counter() - started
                for job in jobs:
                    runner.wait(job.uuid, timeout=300, raise_on_failure=True)
                elapsed = time.perf_counter() - started
                figures[label] = (count / elapsed, count / submitted)
    finally:
        db.dispose()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--uri", default="qemu:///system")
    args = parser.parse_args()

    uri, note = args.uri, ""
    if not _qemu_answers(uri):
        note = f"{uri} does not answer; test driver used, baseline is raw libvirt calls"
    elif os.geteuid() != 0:
        note = "not root (the guest bridge needs it); test driver used"
    work = Path(tempfile.mkdtemp(prefix="stratus-bench-deploy-", dir="/var/tmp"))
    work.chmod(0o755)
    if note:
        uri = _node_uri(work)
    made_bridge = False
    try:
        if not note:
            made_bridge = network.link_state(BRIDGE) is None
            network.ensure_bridge(BRIDGE)
        deploy = bench_deploy(args.runs, uri, work)
        jobs = bench_jobs(args.jobs, work)
    finally:
        if made_bridge:
            network.remove_link(BRIDGE)
        if not uri.startswith("test:"):
            with contextlib.suppress(libvirt.libvirtError):
                conn = libvirt.open(uri)
                for pool in conn.listAllStoragePools(0):
                    try:
                        target = ET.fromstring(pool.XMLDesc(0)).findtext("target/path") or ""
                    except libvirt.libvirtError:
                        continue
                    if target.startswith(str(work)):
                        if pool.isActive():
                            pool.destroy()
                        with contextlib.suppress(libvirt.libvirtError):
                            pool.undefine()
                conn.close()
        shutil.rmtree(work, ignore_errors=True)

    s50, v50 = deploy["stratus_p50"], deploy["virsh_p50"]
    ratio = round(s50 / v50, 2)
    if note:
        print(f"note: {note}")
    print(f"libvirt {args.uri if not note else uri}, {args.runs} deploys")
    for label, p50, times in (
        ("stratus deploy-to-Running", s50, deploy["stratus_ms"]),
        ("raw cp + virsh define+start", v50, deploy["virsh_ms"]),
    ):
        print(f"{label:28} p50 {p50:8.1f} ms  (min {min(times):.1f}, max {max(times):.1f})")
    print(f"stratus / raw = {ratio}")
    par, one = jobs["parallel"], jobs["one_resource"]
    print(
        f"no-op jobs, {args.jobs} on distinct VMs: {par[0]:7.1f} jobs/s end to end "
        f"(submit alone {par[1]:7.1f}/s, ratio {par[0] / par[1]:.2f})"
    )
    print(
        f"no-op jobs, {args.jobs} on one VM:       {one[0]:7.1f} jobs/s end to end "
        f"(submit alone {one[1]:7.1f}/s, ratio {one[0] / one[1]:.2f})"
    )
    figures = {
        "uri": args.uri if not note else "test-driver",
        "deploys": args.runs,
        "stratus_deploy_to_running_p50_ms": round(s50, 1),
        "raw_copy_define_start_p50_ms": round(v50, 1),
        "stratus_vs_raw_ratio": ratio,
        "noop_jobs": args.jobs,
        "noop_jobs_per_s_distinct_vms": round(par[0], 1),
        "noop_jobs_per_s_one_vm": round(one[0], 1),
        "submit_only_per_s": round(par[1], 1),
        "jobs_vs_submit_ratio": round(par[0] / par[1], 3),
        "note": note,
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
