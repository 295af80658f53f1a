"""Benchmark: define + start a domain through Stratus vs raw `virsh define` + `virsh start`.

    .venv/bin/python bench/hosts.py [--runs 10] [--uri qemu:///system]

The same domain XML (a 64 MiB, 1 vCPU QEMU guest with a blank qcow2 disk that never
boots) is defined and started, alternately, through Stratus (`domains.define_domain` +
`domains.start_domain` on the manager's long-lived connection, timeouts and all) and with
two `virsh` processes, on the same libvirtd; each round then destroys and undefines it
(not timed). Without libvirtd the test driver stands in: its state lives in one
connection, so the baseline is then one `virsh` process running both commands (noted in
the output). The last line is the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import libvirt

from engine.hosts import domains
from engine.hosts.connections import ensure_event_loop
from engine.hosts.domain_xml import DiskSpec, DomainSpec, build_domain_xml
from engine.hosts.manager import HostManager

MIB = 2**20


def _qemu_answers(uri: str) -> bool:
    ensure_event_loop()
    try:
        libvirt.open(uri).close()
        return True
    except libvirt.libvirtError:
        return False


def _virsh(uri: str, *commands: str) -> None:
    subprocess.run(["virsh", "-q", "-c", uri, *commands], check=True, capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--uri", default="qemu:///system")
    args = parser.parse_args()

    uri, note = args.uri, ""
    if not _qemu_answers(uri):
        note = f"{uri} does not answer; test driver used, baseline is one virsh process"
        uri = "test:///default"
    work = Path(tempfile.mkdtemp(prefix="stratus-bench-", dir="/var/tmp"))
    work.chmod(0o755)
    disk = work / "root.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "64M"], check=True)
    name = f"stratus-bench-{uuid.uuid4().hex[:8]}"
    dom_uuid = str(uuid.uuid4())
    spec = DomainSpec(
        name=name,
        uuid=dom_uuid,
        vm_uuid=dom_uuid,
        vcpus=1,
        memory_bytes=64 * MIB,
        disks=(DiskSpec(target="vda", path=str(disk)),),
        domain_type="test" if uri.startswith("test:") else "qemu",
    )
    xml = build_domain_xml(spec)
    xml_file = work / "domain.xml"
    xml_file.write_text(xml)

    manager = HostManager(None)
    hc = manager.connection(uri)
    stratus_ms: list[float] = []
    virsh_ms: list[float] = []
    try:
        for _ in range(args.runs):
            started = time.perf_counter()
            domains.define_domain(hc, xml)
            domains.start_domain(hc, name)
            stratus_ms.append((time.perf_counter() - started) * 1000)
            domains.destroy_domain(hc, name)
            domains.undefine_domain(hc, name)

            started = time.perf_counter()
            if uri.startswith("test:"):
                _virsh(uri, f"define {xml_file}; start {name}")
            else:
                _virsh(uri, "define", str(xml_file))
                _virsh(uri, "start", name)
            virsh_ms.append((time.perf_counter() - started) * 1000)
            if not uri.startswith("test:"):
                _virsh(uri, "destroy", name)
                _virsh(uri, "undefine", name)
    finally:
        domains.destroy_domain(hc, name)
        domains.undefine_domain(hc, name)
        manager.close()
        shutil.rmtree(work, ignore_errors=True)

    s50, v50 = statistics.median(stratus_ms), statistics.median(virsh_ms)
    ratio = round(s50 / v50, 3)
    if note:
        print(f"note: {note}")
    print(f"libvirt {uri}, {args.runs} runs")
    for label, p50, times in (("stratus", s50, stratus_ms), ("virsh  ", v50, virsh_ms)):
        print(
            f"{label} define+start p50 {p50:8.1f} ms  (min {min(times):.1f}, max {max(times):.1f})"
        )
    print(f"stratus / virsh = {ratio}")
    figures = {
        "uri": uri,
        "runs": args.runs,
        "stratus_define_start_p50_ms": round(s50, 1),
        "virsh_define_start_p50_ms": round(v50, 1),
        "stratus_vs_virsh_ratio": ratio,
        "note": note,
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
