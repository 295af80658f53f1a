"""Helpers shared by the hypervisor-layer tests: node files, VM rows, waiting for state."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlmodel import select

from engine.bootstrap import Cloud
from engine.demo import Shape
from engine.models import Host, VirtualMachine, VmState

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
