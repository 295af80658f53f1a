"""Fixtures for compute tests on the real libvirtd with QEMU (qemu:///system): the daemon
(else a missing part), a directory QEMU can reach, the guest bridge, a one-host world and
a job runner; each cleans up the domains and pools it made."""

from __future__ import annotations

import contextlib
import os
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest
from compute_world import ComputeWorld, make_compute_world
from conftest import missing_part
from hosts_helpers import forget_domain, need_qemu, qemu_workdir

from engine.bootstrap import Cloud
from engine.hosts import network
from engine.hosts.manager import HostManager
from engine.jobs import JobRunner

URI = "qemu:///system"
VNI = 3917
BRIDGE = f"brvx{VNI}"


@pytest.fixture(scope="module")
def qemu() -> str:
    return need_qemu()


@pytest.fixture
def workdir() -> Iterator[Path]:
    with qemu_workdir("stratus-compute-") as path:
        yield path


@pytest.fixture
def bridge(qemu: str) -> Iterator[str]:
    if os.geteuid() != 0:
        missing_part("making the guest bridge needs root (CI runs the tests as root)")
    existed = network.link_state(BRIDGE) is not None
    network.ensure_bridge(BRIDGE)
    yield BRIDGE
    if not existed:
        network.remove_link(BRIDGE)


def forget_pools_under(path: Path, uri: str = URI) -> None:
    """Stop and undefine the libvirt pools the test made (primary, template source)."""
    conn = libvirt.open(uri)
    try:
        for pool in conn.listAllStoragePools(0):
            try:
                target = ET.fromstring(pool.XMLDesc(0)).findtext("target/path") or ""
            except libvirt.libvirtError:
                continue  # gone meanwhile (another run on this libvirtd)
            if target.startswith(str(path)):
                with contextlib.suppress(libvirt.libvirtError):
                    if pool.isActive():
                        pool.destroy()
                with contextlib.suppress(libvirt.libvirtError):
                    pool.undefine()
    finally:
        conn.close()


@pytest.fixture
def world(qemu: str, bridge: str, cloud: Cloud, workdir: Path) -> Iterator[ComputeWorld]:
    made = make_compute_world(
        cloud, workdir, uris=[qemu], vni=VNI, instance_suffix=f"T{uuid.uuid4().hex[:8]}"
    )
    yield made
    with cloud.db.read() as session:
        from sqlmodel import select

        from engine.models import VirtualMachine

        names = list(session.exec(select(VirtualMachine.instance_name)))
    for name in names:
        forget_domain(name)
    forget_pools_under(workdir)


@pytest.fixture
def runner(cloud: Cloud) -> Iterator[JobRunner]:
    manager = HostManager(cloud.db, timeout=60, debounce=0.3)
    with JobRunner(cloud.db, workers=2, hosts=manager, poll_seconds=0.05) as r:
        yield r
    manager.close()


def domain_on_qemu(name: str) -> tuple[str, str] | None:
    """(state, XML) of the domain on the real libvirtd, None when it is not defined."""
    conn = libvirt.open(URI)
    try:
        try:
            dom = conn.lookupByName(name)
        except libvirt.libvirtError:
            return None
        state = {
            libvirt.VIR_DOMAIN_RUNNING: "running",
            libvirt.VIR_DOMAIN_SHUTOFF: "shutoff",
        }.get(dom.state()[0], str(dom.state()[0]))
        return state, dom.XMLDesc(0)
    finally:
        conn.close()
