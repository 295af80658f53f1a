"""Helpers shared by the hypervisor-layer tests: node files, VM rows, waiting for state."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import libvirt
from sqlmodel import select

from engine.bootstrap import Cloud
from engine.demo import Shape
from engine.hosts.connections import ensure_event_loop
from engine.models import Host, VirtualMachine, VmState
from tests.conftest import missing_part

MIB = 2**20
GIB = 2**30

SHAPE = Shape(
    name="test-shape",
    cpu_model="Stratus Test CPU",
    sockets=2,
    cores_per_socket=4,
    mhz=2400,
    memory_bytes=32 * GIB,
)


def node_uri(tmp_path: Path, name: str = "node1", shape: Shape = SHAPE) -> str:
    """A test-driver host URI whose node file reports `shape`."""
    path = tmp_path / f"{name}.xml"
    path.write_bytes(shape.node_xml())
    return f"test://{path}"


def add_vm(
    cloud: Cloud,
    host: Host,
    instance_name: str,
    *,
    state: str = VmState.RUNNING,
    power_state: str = "PowerOff",
    memory_bytes: int = 256 * MIB,
    uuid: str | None = None,
) -> VirtualMachine:
    """A VM row placed on `host` (as placement would leave it). `uuid`: the VM UUID its
    domain's metadata carries, when the test defines the domain itself."""
    caller = cloud.admin
    with cloud.db.write() as session:
        vm = VirtualMachine(
            name=instance_name,
            instance_name=instance_name,
            account_id=caller.account_id,  # type: ignore[arg-type]
            domain_id=caller.domain_id,  # type: ignore[arg-type]
            zone_id=host.zone_id,
            pod_id=host.pod_id,
            cluster_id=host.cluster_id,
            host_id=host.id,
            cpu_count=1,
            cpu_mhz=1000,
            memory_bytes=memory_bytes,
            state=state,
            power_state=power_state,
        )
        if uuid is not None:
            vm.uuid = uuid
        session.add(vm)
    return vm


def vm_row(cloud: Cloud, instance_name: str) -> VirtualMachine:
    with cloud.db.read() as session:
        return session.exec(
            select(VirtualMachine).where(VirtualMachine.instance_name == instance_name)
        ).one()


def host_row(cloud: Cloud, uuid: str) -> Host:
    with cloud.db.read() as session:
        return session.exec(select(Host).where(Host.uuid == uuid)).one()


def wait_for(what: str, check: Callable[[], Any], *, limit: float = 60.0) -> Any:
    """Poll `check` until it returns a true value; fail naming `what` after `limit` s.

    The limit only bounds a hang: the tests assert on the state reached, never on time.
    """
    deadline = time.monotonic() + limit
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what} (last value {value!r})")
        time.sleep(0.05)


# --- the real libvirtd with QEMU ----------------------------------------------------------

QEMU_URI = "qemu:///system"


def libvirtd_answers(uri: str = QEMU_URI) -> str | None:
    """None when libvirtd at `uri` answers, else why not."""
    try:
        done = subprocess.run(
            ["virsh", "-c", uri, "version"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return None if done.returncode == 0 else (done.stderr.strip().splitlines() or ["?"])[-1]


def need_qemu(tools: tuple[str, ...] = ("qemu-img",)) -> str:
    """qemu:///system, once it answers and `tools` are installed (else a missing part)."""
    reason = libvirtd_answers()
    if reason is not None:
        missing_part(
            f"libvirtd with QEMU at {QEMU_URI} does not answer ({reason}); scripts/test starts it"
        )
    for tool in tools:
        if shutil.which(tool) is None:
            missing_part(f"{tool} not installed (qemu-utils)")
    ensure_event_loop()
    return QEMU_URI


@contextmanager
def qemu_workdir(prefix: str = "stratus-test-") -> Iterator[Path]:
    """A directory QEMU (running as libvirt-qemu) can reach: not under root's 0700 tmp."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def forget_domain(name: str, uri: str = QEMU_URI) -> None:
    """Destroy and undefine a domain a test made, if it is still there."""
    conn = libvirt.open(uri)
    try:
        with contextlib.suppress(libvirt.libvirtError):
            dom = conn.lookupByName(name)
            if dom.isActive():
                dom.destroy()
            dom.undefine()
    finally:
        conn.close()
