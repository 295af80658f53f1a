"""A one-host site on the real libvirtd (qemu:///system) for the storage tests: zone, pod,
cluster, the local host, a dir pool as primary storage, a directory as secondary storage,
disk offerings, and VMs with a root volume (running ones as real, OS-less QEMU domains)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import libvirt
import pytest
from sqlmodel import select

from engine import offerings, topology
from engine.bootstrap import Cloud
from engine.hosts import domains
from engine.hosts import storage as host_storage
from engine.hosts.domain_xml import DiskSpec, DomainSpec, build_domain_xml
from engine.hosts.manager import HostManager
from engine.models import Host, StoragePool, VirtualMachine, Volume, VolumeState, VolumeType
from tests.helpers import GIB, MIB, host_spec, make_cluster, make_pod, make_zone
from tests.hosts_helpers import add_vm
from tests.hosts_helpers import need_qemu as shared_need_qemu

URI = "qemu:///system"


def need_qemu() -> None:
    shared_need_qemu(("qemu-img", "qemu-io"))


@dataclass
class Site:
    cloud: Cloud
    manager: HostManager
    workdir: Path
    host: Host
    pool: StoragePool
    secondary: Path
    domains: list[str] = field(default_factory=list)

    def pool_row(self) -> StoragePool:
        with self.cloud.db.read() as session:
            return session.get(StoragePool, self.pool.id)  # type: ignore[return-value]

    def volume(self, ref: str) -> Volume:
        with self.cloud.db.read() as session:
            return session.exec(select(Volume).where(Volume.uuid == ref)).one()

    def vm(self, ref: str) -> VirtualMachine:
        with self.cloud.db.read() as session:
            return session.exec(select(VirtualMachine).where(VirtualMachine.uuid == ref)).one()

    def make_vm(self, *, running: bool, acpi: bool = True) -> VirtualMachine:
        """A VM row with a 64 MiB root volume on the pool; running: a started domain."""
        name = f"stratus-test-{uuid.uuid4().hex[:8]}"
        vm = add_vm(
            self.cloud,
            self.host,
            name,
            state="Running" if running else "Stopped",
            power_state="PowerOn" if running else "PowerOff",
            memory_bytes=64 * MIB,
        )
        hc = self.manager.for_host(self.host)
        root_name = f"{vm.uuid}-root.qcow2"
        host_storage.create_volume(hc, self.pool.libvirt_pool_name, root_name, 64 * MIB, "qcow2")
        with self.cloud.db.write() as session:
            session.add(
                Volume(
                    name=f"ROOT-{vm.id}",
                    account_id=vm.account_id,
                    domain_id=vm.domain_id,
                    zone_id=vm.zone_id,
                    pool_id=self.pool.id,
                    vm_id=vm.id,
                    device_id=0,
                    volume_type=VolumeType.ROOT,
                    size_bytes=64 * MIB,
                    path=root_name,
                    state=VolumeState.READY,
                )
            )
            if not running:
                row = session.get(VirtualMachine, vm.id)
                row.host_id, row.last_host_id = None, self.host.id  # type: ignore[union-attr]
                session.add(row)
        if running:
            self._define_and_start(
                vm, (DiskSpec(target="vda", path=f"{self.pool.path}/{root_name}"),), acpi
            )
        return self.vm(vm.uuid)

    def start_like_compute(self, vm: VirtualMachine) -> VirtualMachine:
        """Start a stopped VM as compute does: a domain defined from its volumes (pool and
        volume names as disk sources, `vm_disks` targets), then the row Running."""
        from engine.storage.volumes import vm_disks

        with self.cloud.db.read() as session:
            names = {
                v.uuid: v.path for v in session.exec(select(Volume).where(Volume.vm_id == vm.id))
            }
        disks = tuple(
            DiskSpec(
                target=d.target,
                format=d.format,
                pool=self.pool.libvirt_pool_name,
                volume=names[d.volume_uuid],
            )
            for d in vm_disks(self.cloud.db, vm.uuid)
        )
        self._define_and_start(vm, disks, True)
        with self.cloud.db.write() as session:
            row = session.get(VirtualMachine, vm.id)
            row.state, row.power_state, row.host_id = "Running", "PowerOn", self.host.id  # type: ignore[union-attr]
            session.add(row)
        return self.vm(vm.uuid)

    def _define_and_start(
        self, vm: VirtualMachine, disks: tuple[DiskSpec, ...], acpi: bool
    ) -> None:
        hc = self.manager.for_host(self.host)
        name = vm.instance_name
        spec = DomainSpec(
            name=name,
            uuid=vm.uuid,
            vm_uuid=vm.uuid,
            vcpus=1,
            memory_bytes=64 * MIB,
            disks=disks,
            domain_type="qemu",
            vnc=False,
        )
        root = ET.fromstring(build_domain_xml(spec))
        features = root.find("features")
        assert features is not None and features.find("acpi") is not None  # what compute gets
        if not acpi:  # a guest without ACPI PCI hotplug: disks cannot be hot-plugged
            root.remove(features)
        self.domains.append(name)
        domains.define_domain(hc, ET.tostring(root, encoding="unicode"))
        domains.start_domain(hc, name)


@pytest.fixture(name="site")
def site_fixture(cloud: Cloud) -> Iterator[Site]:
    """The site; import `site_fixture` into a test module to use `site`."""
    need_qemu()
    workdir = Path(tempfile.mkdtemp(prefix="stratus-test-", dir="/var/tmp"))
    workdir.chmod(0o755)
    manager = HostManager(cloud.db, timeout=30, alert_after=120, debounce=0.3)
    make_zone(cloud)
    make_pod(cloud)
    make_cluster(cloud)
    host = topology.add_host(cloud.admin, "c1", host_spec("local", uri=URI, address="10.1.1.150"))
    pool = topology.create_storage_pool(
        cloud.admin,
        "primary",
        path=str(workdir / "primary"),
        cluster_ref="c1",
        capacity_bytes=100 * GIB,
    )
    secondary = workdir / "secondary"
    topology.add_image_store(cloud.admin, "z1", "sec", url=str(secondary))
    offerings.create_disk_offering(cloud.admin, "custom", is_customized=True)
    offerings.create_disk_offering(cloud.admin, "small", disk_size_bytes=1 * GIB)
    offerings.create_disk_offering(cloud.admin, "medium", disk_size_bytes=3 * GIB)
    host_storage.ensure_dir_pool(manager.for_host(host), pool.libvirt_pool_name, pool.path)
    s = Site(cloud, manager, workdir, host, pool, secondary)
    try:
        yield s
    finally:
        conn = libvirt.open(URI)
        try:
            for name in s.domains:
                with contextlib.suppress(libvirt.libvirtError):
                    dom = conn.lookupByName(name)
                    if dom.isActive():
                        dom.destroy()
                    dom.undefine()
            for name in conn.listStoragePools() + conn.listDefinedStoragePools():
                if name == pool.libvirt_pool_name or name.startswith("stratus-tmpl-"):
                    with contextlib.suppress(libvirt.libvirtError):
                        p = conn.storagePoolLookupByName(name)
                        path = ET.fromstring(p.XMLDesc(0)).findtext("target/path") or ""
                        if not path.startswith(str(workdir)):
                            continue
                        if p.isActive():
                            p.destroy()
                        p.undefine()
        finally:
            conn.close()
        manager.close()
        shutil.rmtree(workdir, ignore_errors=True)


def qemu_io(path: Path | str, command: str, fmt: str = "qcow2") -> subprocess.CompletedProcess:
    """Run one qemu-io command on an image (write -P / read -P patterns)."""
    return subprocess.run(
        ["qemu-io", "-f", fmt, "-c", command, str(path)], capture_output=True, text=True,
        check=False, timeout=60,
    )  # fmt: skip


def holds_pattern(path: Path | str, pattern: int, length: str = "1M") -> bool:
    done = qemu_io(path, f"read -P {pattern:#x} 0 {length}")
    return done.returncode == 0 and "Pattern verification failed" not in done.stdout + done.stderr
