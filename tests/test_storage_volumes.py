"""Volumes on a real libvirtd with QEMU, through real jobs: create, attach (to a running
domain: hot-plug), grow (blockResize), detach, delete, and the pool's allocated space."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.errors import InUse, InvalidParameter, NotFound, StateConflict
from engine.hosts import disks as host_disks
from engine.hosts import storage as host_storage
from engine.jobs import JobRunner
from engine.models import JobState, VolumeState
from engine.storage import snapshots, volumes
from tests.helpers import GIB, events, rejects
from tests.storage_site import Site, site_fixture  # noqa: F401


@pytest.fixture
def runner(site: Site) -> Iterator[JobRunner]:
    with JobRunner(site.cloud.db, workers=2, hosts=site.manager) as r:
        yield r


def run(runner: JobRunner, job) -> None:  # type: ignore[no-untyped-def]
    done = runner.wait(job.uuid, timeout=120)
    assert done.state == JobState.SUCCEEDED, done.error


def test_create_validates_sizes_against_disk_offerings(site: Site) -> None:
    cloud, admin = site.cloud, site.cloud.admin
    with rejects(cloud, InvalidParameter, "disk offering 'custom' is custom: give a size"):
        volumes.create_volume(admin, "d", zone="z1", disk_offering="custom")
    with rejects(cloud, InvalidParameter, "fixed size of 1 GiB", field="size_bytes"):
        volumes.create_volume(admin, "d", zone="z1", disk_offering="small", size_bytes=2 * GIB)
    with rejects(cloud, InvalidParameter, "whole number of GiB", field="size_bytes"):
        volumes.create_volume(admin, "d", zone="z1", disk_offering="custom", size_bytes=GIB + 1)
    with rejects(cloud, NotFound, "disk offering 'huge' does not exist"):
        volumes.create_volume(admin, "d", zone="z1", disk_offering="huge")
    fixed = volumes.create_volume(admin, "d1", zone="z1", disk_offering="small")
    custom = volumes.create_volume(
        admin, "d2", zone="z1", disk_offering="custom", size_bytes=5 * GIB
    )
    assert (fixed.size_bytes, custom.size_bytes) == (GIB, 5 * GIB)
    assert fixed.state == VolumeState.ALLOCATED and fixed.pool_id is None
    assert site.pool_row().allocated_bytes == 0  # Allocated volumes take no pool space
    # An Allocated volume grows at once (no file yet); shrinking never.
    grown = volumes.resize_volume(admin, "d2", size_bytes=6 * GIB)
    assert grown.size_bytes == 6 * GIB and site.volume(custom.uuid).size_bytes == 6 * GIB
    with rejects(cloud, InvalidParameter, "cannot shrink from 6 GiB to 2 GiB"):
        volumes.resize_volume(admin, "d2", size_bytes=2 * GIB)
    with rejects(cloud, InvalidParameter, "is not custom: give a new disk offering"):
        volumes.resize_volume(admin, "d1", size_bytes=2 * GIB)
    # An Allocated volume is deleted at once.
    deleted = volumes.delete_volume(admin, "d1")
    assert deleted.state == VolumeState.EXPUNGED
    assert [e.event_type for e in events(cloud)][-1] == "VOLUME.DELETE"


def test_a_volume_on_a_running_qemu_domain(site: Site, runner: JobRunner) -> None:
    cloud, admin = site.cloud, site.cloud.admin
    vm = site.make_vm(running=True)
    hc = site.manager.for_host(site.host)
    volume = volumes.create_volume(admin, "data", zone="z1", disk_offering="custom", size_bytes=GIB)
    run(runner, volumes.attach_volume(admin, volume.uuid, vm.uuid))
    attached = site.volume(volume.uuid)
    assert attached.state == VolumeState.READY and attached.vm_id == vm.id
    assert attached.device_id == 1 and attached.pool_id == site.pool.id
    path = volumes.volume_file(site.pool, attached)
    assert Path(path).is_file()
    assert path in host_disks.disk_paths(hc, vm.instance_name)  # plugged into the live guest
    assert path in host_disks.disk_paths(hc, vm.instance_name, live=False)  # and persistent
    assert site.pool_row().allocated_bytes == GIB
    # Attached and running: no delete, no snapshot, no shrink.
    with rejects(cloud, InUse, "volume 'data' is attached to VM", field="volume"):
        volumes.delete_volume(admin, "data")
    with rejects(cloud, StateConflict, "which is Running: stop VM first"):
        snapshots.create_snapshot(admin, "data")
    with rejects(cloud, InUse, "already attached"):
        volumes.attach_volume(admin, "data", vm.uuid)
    # Grow while running: blockResize, and the pool pays the difference.
    run(runner, volumes.resize_volume(admin, "data", size_bytes=2 * GIB))
    assert site.volume(volume.uuid).size_bytes == 2 * GIB
    info = {v.name: v for v in host_storage.list_volumes(hc, site.pool.libvirt_pool_name)}
    assert info[attached.path].capacity_bytes == 2 * GIB  # type: ignore[index]
    assert site.pool_row().allocated_bytes == 2 * GIB
    # Detach from the running guest (SCSI: no guest cooperation needed).
    run(runner, volumes.detach_volume(admin, "data"))
    assert site.volume(volume.uuid).vm_id is None
    assert path not in host_disks.disk_paths(hc, vm.instance_name)
    assert path not in host_disks.disk_paths(hc, vm.instance_name, live=False)
    # Delete: the file goes through libvirt and the pool space comes back.
    run(runner, volumes.delete_volume(admin, "data"))
    gone = site.volume(volume.uuid)
    assert gone.state == VolumeState.EXPUNGED and gone.removed is not None
    assert not Path(path).exists()
    assert site.pool_row().allocated_bytes == 0
    kinds = [e.event_type for e in events(cloud)]
    for kind in ("VOLUME.ATTACH", "VOLUME.RESIZE", "VOLUME.DETACH", "VOLUME.DELETE"):
        assert kind in kinds


def test_attach_to_a_stopped_vm_only_records_it(site: Site, runner: JobRunner) -> None:
    admin = site.cloud.admin
    vm = site.make_vm(running=False)
    first = volumes.create_volume(admin, "a", zone="z1", disk_offering="small")
    second = volumes.create_volume(admin, "b", zone="z1", disk_offering="small")
    run(runner, volumes.attach_volume(admin, "a", vm.uuid))
    run(runner, volumes.attach_volume(admin, "b", vm.uuid))
    a, b = site.volume(first.uuid), site.volume(second.uuid)
    assert (a.vm_id, a.device_id, b.device_id) == (vm.id, 1, 2)
    # What compute's next define of the domain includes.
    disks = volumes.vm_disks(site.cloud.db, vm.uuid)
    assert [(d.target, d.volume_uuid) for d in disks][1:] == [("sdb", a.uuid), ("sdc", b.uuid)]
    assert disks[0].target == "vda" and disks[1].path == volumes.volume_file(site.pool, a)
    assert Path(volumes.volume_file(site.pool, a)).is_file()  # created on the root's pool
    assert site.pool_row().allocated_bytes == 2 * GIB
    # Stopped: resized through libvirt's volume API.
    run(runner, volumes.resize_volume(admin, "a", disk_offering="medium"))
    assert site.volume(first.uuid).size_bytes == 3 * GIB
    assert site.pool_row().allocated_bytes == 4 * GIB
    run(runner, volumes.detach_volume(admin, "b"))
    assert site.volume(second.uuid).vm_id is None


def test_refusals_change_nothing(site: Site) -> None:
    cloud, admin = site.cloud, site.cloud.admin
    vm = site.make_vm(running=False)
    volumes.create_volume(admin, "d", zone="z1", disk_offering="small")
    with rejects(cloud, StateConflict, "volume 'd' is not attached to a VM"):
        volumes.detach_volume(admin, "d")
    root = volumes.list_volumes(admin, vm=vm.uuid)[0]
    with rejects(cloud, InvalidParameter, "is a root volume; only data volumes attach"):
        volumes.attach_volume(admin, root.uuid, vm.uuid)
    with rejects(cloud, InvalidParameter, "is a root volume; it cannot be detached"):
        volumes.detach_volume(admin, root.uuid)
    with rejects(cloud, NotFound, "VM 'nope' does not exist"):
        volumes.attach_volume(admin, "d", "nope")
    with rejects(cloud, StateConflict, "volume 'd' is Allocated: a snapshot needs a Ready"):
        snapshots.create_snapshot(admin, "d")
    # A VM without a root volume on primary storage cannot take a new data volume.
    bare = site.make_vm(running=False)
    with site.cloud.db.write() as session:
        from sqlmodel import select

        from engine.models import Volume

        row = session.exec(select(Volume).where(Volume.vm_id == bare.id)).one()
        row.removed = row.created
        session.add(row)
    with rejects(cloud, StateConflict, "has no root volume on primary storage yet"):
        volumes.attach_volume(admin, "d", bare.uuid)


def test_a_full_pool_refuses_the_attach_and_the_volume_stays_allocated(
    site: Site, runner: JobRunner
) -> None:
    admin = site.cloud.admin
    vm = site.make_vm(running=False)
    volumes.create_volume(admin, "big", zone="z1", disk_offering="custom", size_bytes=400 * GIB)
    job = volumes.attach_volume(admin, "big", vm.uuid)
    done = runner.wait(job.uuid, timeout=120)
    assert done.state == JobState.FAILED
    assert "primary storage 'primary': no room for volume 'big'" in (done.error or "")
    big = volumes.get_volume(admin, "big")
    assert big.state == VolumeState.ALLOCATED and big.pool_id is None and big.vm_id is None
    assert site.pool_row().allocated_bytes == 0


def test_a_failed_hot_plug_undoes_the_volume_it_created(site: Site, runner: JobRunner) -> None:
    """A domain without ACPI cannot hot-plug: the job fails saying so, and the volume file
    created for it is deleted, its pool space given back, the volume Allocated again."""
    admin = site.cloud.admin
    vm = site.make_vm(running=True, acpi=False)
    volume = volumes.create_volume(admin, "data", zone="z1", disk_offering="small")
    job = volumes.attach_volume(admin, "data", vm.uuid)
    done = runner.wait(job.uuid, timeout=120)
    assert done.state == JobState.FAILED
    assert "cannot take or release disks while running" in (done.error or "")
    assert "stop the VM first" in (done.error or "")
    after = site.volume(volume.uuid)
    assert (after.state, after.pool_id, after.path, after.vm_id) == (
        VolumeState.ALLOCATED,
        None,
        None,
        None,
    )
    hc = site.manager.for_host(site.host)
    names = [v.name for v in host_storage.list_volumes(hc, site.pool.libvirt_pool_name)]
    assert names == [f"{vm.uuid}-root.qcow2"]
    assert site.pool_row().allocated_bytes == 0
    # The same volume then attaches to a VM that can take it.
    other = site.make_vm(running=True)
    run(runner, volumes.attach_volume(admin, "data", other.uuid))
    assert site.volume(volume.uuid).vm_id == other.id


def test_detach_finds_a_disk_compute_defined_by_pool_and_volume(
    site: Site, runner: JobRunner
) -> None:
    """Attached while stopped, then started by compute (a `pool`/`volume` disk source named
    as vm_disks says): the running guest's disk is found and unplugged."""
    admin = site.cloud.admin
    vm = site.make_vm(running=False)
    volume = volumes.create_volume(admin, "data", zone="z1", disk_offering="small")
    run(runner, volumes.attach_volume(admin, "data", vm.uuid))
    vm = site.start_like_compute(vm)
    hc = site.manager.for_host(site.host)
    key = f"{site.pool.libvirt_pool_name}/{site.volume(volume.uuid).path}"
    assert host_disks.disk_paths(hc, vm.instance_name).get(key) == "sdb"
    run(runner, volumes.detach_volume(admin, "data"))
    assert key not in host_disks.disk_paths(hc, vm.instance_name)
    assert key not in host_disks.disk_paths(hc, vm.instance_name, live=False)
    assert site.volume(volume.uuid).vm_id is None


def test_an_attach_whose_process_died_is_undone_even_unrecorded(site: Site) -> None:
    """The dead run had claimed the space, marked the volume Creating and created its file,
    but died before recording any step: recovery finds all of it from the state."""
    from datetime import timedelta

    from sqlalchemy import update as sql_update

    from engine.jobs import get_job
    from engine.models import Job, utcnow
    from engine.storage import pool_space

    admin = site.cloud.admin
    vm = site.make_vm(running=False)
    volume = volumes.create_volume(admin, "data", zone="z1", disk_offering="small")
    job = volumes.attach_volume(admin, "data", vm.uuid)  # Pending: no runner yet
    with site.cloud.db.write() as session:
        row = session.get(type(volume), volume.id)
        pool_space.claim_pool_space(session, site.pool, row.size_bytes, "test")  # type: ignore[union-attr]
        volumes.cas_volume(
            session, row, VolumeState.ALLOCATED, state=VolumeState.CREATING,  # type: ignore[arg-type]
            pool_id=site.pool.id, path=f"{volume.uuid}.qcow2",
        )  # fmt: skip
        session.execute(
            sql_update(Job)
            .where(Job.uuid == job.uuid)
            .values(state=JobState.RUNNING, owner="elsewhere:1:1",
                    lease_expires=utcnow() - timedelta(seconds=5), started=utcnow())
        )  # fmt: skip
    hc = site.manager.for_host(site.host)
    host_storage.create_volume(hc, site.pool.libvirt_pool_name, f"{volume.uuid}.qcow2", GIB)
    assert site.pool_row().allocated_bytes == GIB
    with JobRunner(site.cloud.db, workers=1, hosts=site.manager) as runner:
        assert [j.uuid for j in runner.recovered] == [job.uuid]
    failed = get_job(site.cloud.db, job.uuid)
    assert failed.state == JobState.FAILED
    assert "deleted the new volume file" in (failed.error or "")
    after = site.volume(volume.uuid)
    assert (after.state, after.pool_id, after.vm_id) == (VolumeState.ALLOCATED, None, None)
    names = [v.name for v in host_storage.list_volumes(hc, site.pool.libvirt_pool_name)]
    assert f"{volume.uuid}.qcow2" not in names
    assert site.pool_row().allocated_bytes == 0
