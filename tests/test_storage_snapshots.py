"""Snapshots of real volumes (qemu-img convert to secondary storage), revert, and templates
made from a snapshot or a volume, through real jobs; content checked with qemu-io."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.errors import AlreadyExists, InvalidParameter, NotFound, StateConflict
from engine.jobs import JobRunner
from engine.models import JobState, SnapshotState, VolumeState
from engine.storage import snapshots, templates, volumes
from tests.helpers import events, rejects
from tests.storage_site import Site, holds_pattern, qemu_io, site_fixture  # noqa: F401


@pytest.fixture
def runner(site: Site) -> Iterator[JobRunner]:
    with JobRunner(site.cloud.db, workers=2, hosts=site.manager) as r:
        yield r


def run(runner: JobRunner, job):  # type: ignore[no-untyped-def]
    done = runner.wait(job.uuid, timeout=120)
    assert done.state == JobState.SUCCEEDED, done.error
    return done


def _used(site: Site) -> int:
    from engine import topology

    return topology.get_image_store(site.cloud.admin, "sec").used_bytes


@pytest.fixture
def data_volume(site: Site, runner: JobRunner):  # type: ignore[no-untyped-def]
    """A 1 GiB data volume attached to a stopped VM, its first MiB written with 0xab."""
    vm = site.make_vm(running=False)
    volume = volumes.create_volume(site.cloud.admin, "data", zone="z1", disk_offering="small")
    run(runner, volumes.attach_volume(site.cloud.admin, volume.uuid, vm.uuid))
    volume = site.volume(volume.uuid)
    path = Path(volumes.volume_file(site.pool, volume))
    assert qemu_io(path, "write -P 0xab 0 1M").returncode == 0
    return vm, volume, path


def test_snapshot_revert_and_delete(site: Site, runner: JobRunner, data_volume) -> None:
    cloud, admin = site.cloud, site.cloud.admin
    _vm, volume, path = data_volume
    job = run(runner, snapshots.create_snapshot(admin, "data", name="before"))
    snap = snapshots.get_snapshot(admin, "before")
    assert snap.state == SnapshotState.BACKED_UP and snap.size_bytes == volume.size_bytes
    file = site.secondary / "snapshots" / volume.uuid / f"{snap.uuid}.qcow2"
    assert file.is_file() and holds_pattern(file, 0xAB)
    assert _used(site) == file.stat().st_size == snap.physical_size_bytes
    assert site.volume(volume.uuid).state == VolumeState.READY
    assert '"snapshot"' in (job.result or "")
    # The volume changes; the revert brings the snapshot's content back.
    assert qemu_io(path, "write -P 0xcd 0 1M").returncode == 0
    assert not holds_pattern(path, 0xAB)
    run(runner, snapshots.revert_snapshot(admin, "before"))
    assert holds_pattern(path, 0xAB)
    assert site.volume(volume.uuid).state == VolumeState.READY
    # Delete: file and store space go.
    run(runner, snapshots.delete_snapshot(admin, "before"))
    assert not file.exists() and _used(site) == 0
    with rejects(cloud, NotFound, "snapshot 'before' was deleted"):
        snapshots.delete_snapshot(admin, "before")
    kinds = [e.event_type for e in events(cloud)]
    assert {"SNAPSHOT.CREATE", "SNAPSHOT.REVERT", "SNAPSHOT.DELETE"} <= set(kinds)


def test_templates_from_a_snapshot_and_from_a_volume(
    site: Site, runner: JobRunner, data_volume
) -> None:
    cloud, admin = site.cloud, site.cloud.admin
    _vm, volume, _path = data_volume
    run(runner, snapshots.create_snapshot(admin, "data", name="s1"))
    run(
        runner,
        snapshots.create_template_from(
            admin, "from-snap", snapshot="s1", os_type="Debian GNU/Linux 12 (64-bit)"
        ),
    )
    tpl, fmt = templates.template_path_in_zone(cloud.db, "from-snap", "z1")
    assert fmt == "qcow2" and tpl.is_relative_to(site.secondary) and holds_pattern(tpl, 0xAB)
    row = templates.get_template(admin, "from-snap")
    assert row.os_type == "Debian GNU/Linux 12 (64-bit)" and row.checksum.startswith("sha256:")
    run(runner, snapshots.create_template_from(admin, "from-vol", volume="data"))
    tpl2, _ = templates.template_path_in_zone(cloud.db, "from-vol", "z1")
    assert holds_pattern(tpl2, 0xAB)
    assert site.volume(volume.uuid).state == VolumeState.READY
    # The same name again, or neither source: refused, nothing written.
    with rejects(cloud, AlreadyExists, "template 'from-vol'", "already taken"):
        snapshots.create_template_from(admin, "from-vol", volume="data")
    with rejects(cloud, InvalidParameter, "give a volume or a snapshot"):
        snapshots.create_template_from(admin, "x")
    with rejects(cloud, InvalidParameter, "OS type 'Beos'"):
        snapshots.create_template_from(admin, "x", snapshot="s1", os_type="Beos")


def test_a_running_vm_s_volume_is_refused_stop_vm_first(site: Site, runner: JobRunner) -> None:
    cloud, admin = site.cloud, site.cloud.admin
    vm = site.make_vm(running=True)
    root = volumes.list_volumes(admin, vm=vm.uuid)[0]
    with rejects(cloud, StateConflict, f"VM '{vm.name}', which is Running: stop VM first"):
        snapshots.create_snapshot(admin, root.uuid)
    with rejects(cloud, StateConflict, "stop VM first"):
        snapshots.create_template_from(admin, "t", volume=root.uuid)


def test_a_failed_snapshot_leaves_no_file_and_the_volume_ready(
    site: Site, runner: JobRunner, data_volume
) -> None:
    admin = site.cloud.admin
    _vm, volume, path = data_volume
    path.unlink()  # the volume's file vanished under us
    job = snapshots.create_snapshot(admin, "data", name="doomed")
    done = runner.wait(job.uuid, timeout=120)
    assert done.state == JobState.FAILED and "no such file" in (done.error or "")
    snap = snapshots.list_snapshots(admin, volume="data")[0]
    assert snap.state == SnapshotState.ERROR and "no such file" in (snap.error or "")
    assert not list((site.secondary / "snapshots").rglob("*.qcow2*"))
    assert site.volume(volume.uuid).state == VolumeState.READY
    run(runner, snapshots.delete_snapshot(admin, "doomed"))
