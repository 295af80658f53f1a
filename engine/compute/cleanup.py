"""Taking back what a VM holds: its domain, its volumes, its NICs and its capacity claim.

Every function here is idempotent and finds what to remove by name or by the VM's id, not
only from what a job recorded: a side effect that happened just before its process died,
too late to be recorded, is removed all the same. Each returns what it did, in words, for
the job's message and the audit log.
"""

from __future__ import annotations

import logging

from sqlalchemy import update
from sqlmodel import Session, col, select

from engine.context import Caller
from engine.errors import NotFound, StratusError
from engine.hosts import domains, storage
from engine.hosts.connections import HostConnection
from engine.hosts.manager import HostManager
from engine.ipam.networks import remove_nic
from engine.models import (
    Host,
    Nic,
    StoragePool,
    StorageScope,
    VirtualMachine,
    Volume,
    VolumeState,
    utcnow,
)
from engine.placement import release_capacity
from engine.storage.pool_space import release_volume_space

log = logging.getLogger("stratus.compute")


def volume_file_name(volume: Volume) -> str:
    """The file of a volume in its pool: named by the volume's UUID, so that an undo finds
    it even when its creation was never recorded."""
    return f"{volume.uuid}.qcow2"


def connection_to(hosts: HostManager, session: Session, host_id: int) -> HostConnection:
    host = session.get(Host, host_id)
    if host is None:
        raise NotFound(f"host #{host_id} no longer exists", field="host")
    hc = hosts.for_host(host)
    hc.connect()  # connect (and let the manager catch up) before anything is asked of it
    return hc


def remove_domain(hosts: HostManager, session: Session, host_id: int, name: str) -> str | None:
    """Force the domain off and undefine it; None when the host had no such domain."""
    hc = connection_to(hosts, session, host_id)
    stopped = domains.destroy_domain(hc, name)
    undefined = domains.undefine_domain(hc, name)
    if not (stopped or undefined):
        return None
    host = session.get(Host, host_id)
    return f"domain {name} {'stopped and ' if stopped else ''}undefined on host '{host.name}'"  # type: ignore[union-attr]


def _host_for_pool(session: Session, pool: StoragePool, preferred: list[int]) -> int | None:
    """A host that reaches the pool: one of `preferred` if it does, else any of its cluster
    (or zone, for a zone-wide pool)."""
    if pool.scope == StorageScope.ZONE or pool.cluster_id is None:
        query = select(Host.id).where(Host.zone_id == pool.zone_id)
    else:
        query = select(Host.id).where(Host.cluster_id == pool.cluster_id)
    reach = list(session.exec(query.order_by(col(Host.id))))
    for host_id in preferred:
        if host_id in reach:
            return host_id
    return reach[0] if reach else None


def delete_volumes(
    hosts: HostManager,
    session: Session,
    vm: VirtualMachine,
    *,
    preferred_hosts: list[int],
    keep_rows: bool = False,
) -> tuple[list[str], list[str]]:
    """Delete the VM's volume files and mark their rows Expunged (removed), or with
    `keep_rows` (a deploy retrying on another host) back to Allocated, on no pool.

    Returns (what was deleted, what could not be, with why); a volume that could not be
    deleted stays, in state Error, for an operator to see.
    """
    done: list[str] = []
    failed: list[str] = []
    volumes = list(
        session.exec(select(Volume).where(Volume.vm_id == vm.id, col(Volume.removed).is_(None)))
    )
    for volume in volumes:
        if volume.pool_id is not None:
            # A file created just before a crash, too late for its row to say so, is
            # found by its name all the same.
            file_name = volume.path or volume_file_name(volume)
            pool = session.get(StoragePool, volume.pool_id)
            assert pool is not None
            host_id = _host_for_pool(session, pool, preferred_hosts)
            try:
                if host_id is None:
                    raise NotFound(f"no host reaches primary storage '{pool.name}'")
                hc = connection_to(hosts, session, host_id)
                storage.ensure_dir_pool(hc, pool.libvirt_pool_name, pool.path)
                if storage.delete_volume(hc, pool.libvirt_pool_name, file_name):
                    done.append(f"volume {volume.name} deleted from '{pool.name}'")
            except StratusError as exc:
                failed.append(f"volume {volume.name} on '{pool.name}': {exc}")
                volume.state = VolumeState.ERROR
                continue
        if keep_rows:
            # The claim still counts its space; releasing the claim gives it back.
            volume.state, volume.pool_id, volume.path = VolumeState.ALLOCATED, None, None
        else:
            # Its pool space goes back now: from the VM's claim when placement counted it
            # there, else (a data volume storage attached) from the pool itself.
            release_volume_space(session, volume)
            volume.state, volume.removed = VolumeState.EXPUNGED, utcnow()
        volume.update_count += 1
        session.add(volume)
    return done, failed


def free_nics(session: Session, vm: VirtualMachine) -> list[str]:
    """Remove the VM's NICs and give their addresses back."""
    freed = []
    for nic in session.exec(select(Nic).where(Nic.vm_id == vm.id).order_by(col(Nic.id))):
        freed.append(nic.address)
        remove_nic(session, nic)
    session.flush()
    return [f"address{'es' if len(freed) > 1 else ''} {', '.join(freed)} freed"] if freed else []


def release_claim(caller: Caller, vm: VirtualMachine, on: str) -> list[str]:
    """Give the VM's placement claim back (`on` as placement.release_capacity); nothing when
    it holds none."""
    try:
        release_capacity(caller, vm.uuid, on=on)
    except NotFound:
        return []
    return ["capacity released" if on == "destroy" else "host capacity moved to reserved"]


def take_everything_back(
    caller: Caller,
    hosts: HostManager,
    vm_uuid: str,
    *,
    host_ids: list[int],
    keep_volume_rows: bool = False,
) -> tuple[list[str], list[str]]:
    """Undo a deploy (or expunge): domain on each host in `host_ids` (and the VM's own
    host), volumes, NICs, capacity claim — in that order, the reverse of a deploy.

    Returns (what was undone, what failed). The VM row keeps its state (the caller moves
    it); its host, pod and cluster are cleared.
    """
    done: list[str] = []
    failed: list[str] = []
    db = caller.db
    with db.read() as session:
        vm = session.exec(select(VirtualMachine).where(VirtualMachine.uuid == vm_uuid)).one()
        candidates = [h for h in (vm.host_id, *host_ids) if h is not None]
        for host_id in dict.fromkeys(candidates):
            try:
                what = remove_domain(hosts, session, host_id, vm.instance_name)
            except StratusError as exc:
                failed.append(f"domain {vm.instance_name} on host #{host_id}: {exc}")
                continue
            if what:
                done.append(what)
    with db.write() as session:
        vm = session.exec(select(VirtualMachine).where(VirtualMachine.uuid == vm_uuid)).one()
        deleted, not_deleted = delete_volumes(
            hosts,
            session,
            vm,
            preferred_hosts=list(dict.fromkeys(candidates)),
            keep_rows=keep_volume_rows,
        )
        done += deleted
        failed += not_deleted
        done += free_nics(session, vm)
    done += release_claim(caller, vm, "destroy")
    with db.write() as session:
        session.execute(
            update(VirtualMachine)
            .where(col(VirtualMachine.uuid) == vm_uuid)
            .values(host_id=None, update_count=VirtualMachine.update_count + 1)
        )
    return done, failed


def describe(done: list[str], failed: list[str]) -> str:
    text = "; ".join(done) if done else "nothing to undo"
    if failed:
        text += "; NOT undone: " + "; ".join(failed)
    return text
