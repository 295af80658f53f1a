"""`stratus init --all-in-one`: a one-host cloud, made once; a second run changes nothing.

Run against the libvirt test driver (always) and against qemu:///system (where libvirtd
runs). The guest bridge goes into a private network namespace, so the test leaves the
machine's own interfaces alone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest
from sqlmodel import select

from cli.main import main
from engine.bootstrap import Cloud
from engine.hosts.network import link_state
from engine.models import Cluster, Host, ImageStore, Pod, StoragePool, Zone
from tests.conftest import missing_part
from tests.helpers import changed_tables, db_snapshot


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        missing_part("creating a network namespace needs root and iproute2")
    name = f"stratus-aio-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    yield name
    subprocess.run(["ip", "netns", "delete", name], check=False)


@pytest.fixture
def storage_dirs() -> Iterator[tuple[Path, Path]]:
    root = Path(tempfile.mkdtemp(prefix="stratus-aio-", dir="/var/tmp"))
    root.chmod(0o755)
    yield root / "primary", root / "secondary"
    shutil.rmtree(root, ignore_errors=True)


def _init(cloud: Cloud, uri: str, netns: str, dirs: tuple[Path, Path]) -> list[str]:
    return [
        "--db", cloud.db.url, "init", "--all-in-one", "--uri", uri, "--netns", netns,
        "--primary-path", str(dirs[0]), "--secondary-path", str(dirs[1]),
    ]  # fmt: skip


def _rows(cloud: Cloud) -> dict[str, list]:
    with cloud.db.read() as session:
        return {
            "zone": list(session.exec(select(Zone))),
            "pod": list(session.exec(select(Pod))),
            "cluster": list(session.exec(select(Cluster))),
            "host": list(session.exec(select(Host))),
            "pool": list(session.exec(select(StoragePool))),
            "store": list(session.exec(select(ImageStore))),
        }


def _check_first_run(cloud: Cloud, uri: str, netns: str, dirs, capsys) -> dict[str, list]:  # type: ignore[no-untyped-def]
    assert main(_init(cloud, uri, netns, dirs)) == 0
    out = capsys.readouterr().out
    assert out.startswith("stratus: all-in-one: created zone 'local', pod 'pod-1'")
    assert "cluster 'cluster-1'" in out and "bridge cloudbr0" in out
    rows = _rows(cloud)
    assert {k: len(v) for k, v in rows.items()} == dict.fromkeys(rows, 1)
    host = rows["host"][0]
    assert host.uri == uri and host.cpu_cores >= 1 and host.memory_bytes > 0
    assert host.libvirt_version and host.hypervisor_version
    pool = rows["pool"][0]
    assert pool.path == str(dirs[0]) and pool.cluster_id == host.cluster_id
    assert pool.capacity_bytes > 0  # read back from libvirt
    assert rows["store"][0].url == f"file://{dirs[1]}"
    assert sorted(p.name for p in dirs[1].iterdir()) == ["isos", "snapshots", "templates"]
    bridge = link_state("cloudbr0", netns=netns)
    assert bridge is not None and bridge.kind == "bridge" and bridge.up
    return rows


def test_all_in_one_on_the_test_driver_twice(cloud, netns, storage_dirs, capsys) -> None:
    uri = "test:///default"
    _check_first_run(cloud, uri, netns, storage_dirs, capsys)
    before, rows_before = db_snapshot(cloud), _dumped(cloud)
    assert main(_init(cloud, uri, netns, storage_dirs)) == 0
    out = capsys.readouterr().out
    assert out.strip() == (
        "stratus: all-in-one: this machine is already an all-in-one cloud; nothing changed"
    )
    # Only the host's liveness moved (it was seen again); nothing else was written.
    assert changed_tables(before, db_snapshot(cloud)) in ([], ["host"])
    assert _dumped(cloud) == rows_before


def _dumped(cloud: Cloud) -> dict[str, list[dict]]:
    return {
        kind: [row.model_dump(exclude={"last_seen"}) for row in rows]
        for kind, rows in _rows(cloud).items()
    }


def test_all_in_one_refuses_when_libvirtd_does_not_answer(cloud, netns, storage_dirs, capsys):
    before = db_snapshot(cloud)
    uri = f"test://{storage_dirs[0]}-missing-node.xml"
    assert main(_init(cloud, uri, netns, storage_dirs)) == 1
    err = capsys.readouterr().err
    assert err.startswith("stratus: error: all-in-one: libvirtd does not answer at test://")
    assert err.count("\n") == 1  # the CLI's one-line convention
    assert changed_tables(before, db_snapshot(cloud)) == []
    assert link_state("cloudbr0", netns=netns) is None
    assert not storage_dirs[1].exists()


def test_all_in_one_on_qemu_system_twice(cloud, netns, storage_dirs, capsys) -> None:
    try:
        libvirt.registerErrorHandler(lambda *_: None, None)
        libvirt.open("qemu:///system").close()
    except libvirt.libvirtError as exc:
        missing_part(f"libvirtd at qemu:///system does not answer: {exc}")
    try:
        rows = _check_first_run(cloud, "qemu:///system", netns, storage_dirs, capsys)
        pool_name = rows["pool"][0].libvirt_pool_name
        conn = libvirt.open("qemu:///system")
        pool = conn.storagePoolLookupByName(pool_name)
        assert pool.isActive() and pool.autostart()
        conn.close()
        assert main(_init(cloud, "qemu:///system", netns, storage_dirs)) == 0
        out = capsys.readouterr().out
        assert out.strip().endswith("already an all-in-one cloud; nothing changed")
        assert {k: len(v) for k, v in _rows(cloud).items()} == dict.fromkeys(rows, 1)
    finally:
        conn = libvirt.open("qemu:///system")
        for pool in conn.listAllStoragePools(0):
            path = pool.XMLDesc(0)
            if str(storage_dirs[0]) in path:
                with contextlib.suppress(libvirt.libvirtError):
                    pool.destroy()
                with contextlib.suppress(libvirt.libvirtError):
                    pool.undefine()
        conn.close()
