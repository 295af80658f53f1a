"""Deploying a VM: validate, then a DeployVM job places it, gives it addresses, creates its
volumes, defines and starts its domain — undoing every finished step when a later fails.

`deploy_vm` validates everything it can before writing, then in ONE transaction inserts
the VM (Starting), its volume rows (Allocated) and the DeployVM job. The job (`run_deploy`)
records a step right after each side effect (ctx.record_step), so that a process that
finds the job orphaned (`recover_deploy`) knows what was done. When a step fails, what was
done is taken back in reverse (domain, volumes, NICs, claim) and the VM ends in Error with
the reason, as CloudStack keeps a VM whose creation failed; expunge removes it. When the
start itself fails, the host joins the avoid set and the VM is placed again, up to
`start.retry` times.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlmodel import Session, col, select

from engine import custom_sizes
from engine.compute import cleanup
from engine.compute.context import StepContext, hosts_of, step_done
from engine.compute.domain import domain_xml
from engine.compute.states import set_reason, transition
from engine.compute.templates import ready_copy, template_file
from engine.context import Caller
from engine.errors import (
    AlreadyExists,
    InvalidParameter,
    NotFound,
    PermissionDenied,
    StateConflict,
    StratusError,
)
from engine.events import record_event
from engine.hosts import domains, storage
from engine.hosts.connections import is_simulated
from engine.hosts.guests import guest_domain_type
from engine.ipam.networks import add_nic, basic_zone_network
from engine.lookup import resolve
from engine.models import (
    Account,
    AffinityGroup,
    AffinityGroupMember,
    DiskOffering,
    GuestNetwork,
    GuestType,
    Host,
    ImageFormat,
    NetworkType,
    PowerState,
    ServiceOffering,
    StoragePool,
    Template,
    VirtualMachine,
    VmLifecycle,
    VmState,
    Volume,
    VolumeState,
    VolumeType,
    Zone,
    utcnow,
)
from engine.placement import Avoid, PlacementRequest, VolumeRequest, place_vm
from engine.settings import effective_value
from engine.validation import check_text, parse_ipv4

if TYPE_CHECKING:
    from engine.models import Job

log = logging.getLogger("stratus.compute")

DEPLOY_JOB = "DeployVM"
# A guest hostname: one DNS label (RFC 1123), as CloudStack requires of VM names.
_INSTANCE_SUFFIX = re.compile(r"^[A-Za-z0-9-]{1,16}$")
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


class DeployFailed(StratusError):
    """A deploy failed; what it had done was undone and the VM is in Error."""


@dataclass(frozen=True)
class DeployRequest:
    """What the operator asks for: names or UUIDs, as the console and the API pass them."""

    name: str
    zone: str
    offering: str
    template: str
    networks: Sequence[str] = ()
    disk_offerings: Sequence[str] = ()
    ip_address: str | None = None
    display_name: str = ""
    account: str | None = None
    host: str | None = None  # an admin pins the host (placement still checks it fits)
    # A customized offering's sizes for this VM (missing ones: the offering's defaults);
    # refused for an offering of fixed sizes.
    cpu_count: int | None = None
    cpu_mhz: int | None = None  # per virtual CPU
    memory_bytes: int | None = None
    # The account's affinity groups (names or UUIDs) the VM joins when its row is made;
    # placement keeps it apart from (anti-affinity) or with (affinity) their other VMs.
    affinity_groups: Sequence[str] = ()


@dataclass(frozen=True)
class RootDisk:
    """What a VM's root disk is made of: a copy of its template, or (deployed from an ISO)
    a blank disk the size of the first disk offering, as CloudStack's ISO deploy takes it."""

    size_bytes: int
    from_iso: bool = False
    offering: DiskOffering | None = None


def root_disk(label: str, template: Template, disks: Sequence[DiskOffering]) -> RootDisk:
    """The root disk a deploy of `template` gets; `disks` are the deploy's disk offerings,
    the first of which sizes the blank root disk of an ISO deploy."""
    if not template.bootable:
        raise InvalidParameter(
            f"{label}: {'ISO' if template.format == ImageFormat.ISO else 'template'} "
            f"'{template.name}' is not bootable",
            field="template",
        )
    if template.format != ImageFormat.ISO:
        return RootDisk(template.size_bytes)
    if not disks:
        raise InvalidParameter(
            f"{label}: ISO '{template.name}' boots onto a blank root disk: choose a disk "
            "offering for it (the first disk offering sizes the root disk)",
            field="disk_offerings",
        )
    return RootDisk(disks[0].disk_size_bytes, from_iso=True, offering=disks[0])


# --- validate and submit ---------------------------------------------------------------


def _networks_for(
    session: Session, label: str, zone: Zone, refs: Sequence[str], account_id: int
) -> list[GuestNetwork]:
    if not refs:
        if zone.network_type == NetworkType.BASIC:
            network = basic_zone_network(session, zone)
            if network is None:
                raise InvalidParameter(
                    f"{label}: Basic zone '{zone.name}' has no guest network yet",
                    field="networks",
                )
            return [network]
        raise InvalidParameter(
            f"{label}: name at least one guest network of Advanced zone '{zone.name}'",
            field="networks",
        )
    found: list[GuestNetwork] = []
    for ref in refs:
        network = resolve(session, GuestNetwork, ref, "network", field="networks", zone_id=zone.id)
        if network.zone_id != zone.id:
            raise InvalidParameter(
                f"{label}: network '{network.name}' is not in zone '{zone.name}'",
                field="networks",
            )
        if network.guest_type == GuestType.ISOLATED and network.account_id != account_id:
            raise InvalidParameter(
                f"{label}: network '{network.name}' is an isolated network of another account",
                field="networks",
            )
        if any(n.id == network.id for n in found):
            raise InvalidParameter(
                f"{label}: network '{network.name}' is named twice", field="networks"
            )
        found.append(network)
    return found


def prepare_deploy(
    session: Session, caller: Caller, request: DeployRequest
) -> tuple[VirtualMachine, dict[str, Any]]:
    """Validate `request` and insert the VM (Starting) with its volume rows (Allocated);
    returns the VM and the DeployVM job's parameters.

    Everything an operator can get wrong is refused here, before anything is written.
    """
    name = (request.name or "").strip()
    label = f"VM '{name}'"
    if not _HOSTNAME.match(name):
        raise InvalidParameter(
            f"VM name {name[:64]!r} is not a valid hostname (letters, digits and '-', "
            "1-63 characters, not starting or ending with '-')",
            field="name",
        )
    display_name = check_text(label, request.display_name, field="display_name", limit=255)
    zone = resolve(session, Zone, request.zone, "zone", field="zone")
    if request.account is not None:
        account = resolve(session, Account, request.account, "account", field="account")
    else:
        account = session.get(Account, caller.account_id)
        if account is None:
            raise InvalidParameter(f"{label}: the caller has no account", field="account")
    offering = resolve(session, ServiceOffering, request.offering, "offering", field="offering")
    if offering.state != "Active" or offering.is_system:
        raise InvalidParameter(
            f"{label}: service offering '{offering.name}' is not an active user offering",
            field="offering",
        )
    sizes = vm_sizes(label, offering, request)
    template = resolve(session, Template, request.template, "template", field="template")
    ready_copy(session, template, zone)
    networks = _networks_for(session, label, zone, request.networks, account.id)  # type: ignore[arg-type]
    disks = [
        resolve(session, DiskOffering, ref, "disk offering", field="disk_offerings")
        for ref in request.disk_offerings
    ]
    for disk in disks:
        if disk.state != "Active" or disk.disk_size_bytes <= 0:
            raise InvalidParameter(
                f"{label}: disk offering '{disk.name}' has no fixed size (custom sizes are "
                "not supported at deploy)",
                field="disk_offerings",
            )
    root = root_disk(label, template, disks)
    disks = disks[1:] if root.offering is not None else disks
    groups = affinity_groups_for(session, label, account, request.affinity_groups)
    ip_address = None
    if request.ip_address:
        ip_address = str(parse_ipv4(label, request.ip_address, field="ip_address", what="IP"))
    suffix = str(effective_value(session, "instance.name"))
    if not _INSTANCE_SUFFIX.match(suffix):
        raise InvalidParameter(
            f"{label}: setting 'instance.name' is {suffix[:32]!r}; instance names need "
            "1-16 letters, digits or '-'",
            field="name",
        )
    taken = session.exec(
        select(VirtualMachine.id).where(
            VirtualMachine.name == name,
            VirtualMachine.account_id == account.id,
            VirtualMachine.zone_id == zone.id,
            col(VirtualMachine.removed).is_(None),
        )
    ).first()
    if taken is not None:
        raise AlreadyExists(
            f"{label}: account '{account.name}' already has a VM of that name in zone "
            f"'{zone.name}'",
            field="name",
        )
    vm = VirtualMachine(
        name=name,
        display_name=display_name or name,
        instance_name=f"pending-{name}-{utcnow().timestamp()}",
        account_id=account.id,  # type: ignore[arg-type]
        domain_id=account.domain_id,
        zone_id=zone.id,  # type: ignore[arg-type]
        service_offering_id=offering.id,
        template_id=template.id,
        # Deployed from an ISO: it stays in the drive, the VM boots it (and installs onto
        # its blank root disk) until the disk boots by itself.
        iso_id=template.id if root.from_iso else None,
        cpu_count=sizes[0],
        cpu_mhz=sizes[1],
        memory_bytes=sizes[2],
        state=VmState.STARTING,
        power_state=PowerState.POWER_OFF,
    )
    session.add(vm)
    session.flush()
    # CloudStack's instance name: i-<account id>-<VM id>-<instance.name>, the domain name
    # on the host.
    vm.instance_name = f"i-{account.id}-{vm.id}-{suffix}"
    session.add(
        Volume(
            name=f"ROOT-{vm.id}",
            account_id=account.id,  # type: ignore[arg-type]
            domain_id=account.domain_id,
            zone_id=zone.id,  # type: ignore[arg-type]
            vm_id=vm.id,
            device_id=0,
            volume_type=VolumeType.ROOT,
            template_id=None if root.from_iso else template.id,
            disk_offering_id=root.offering.id if root.offering is not None else None,
            size_bytes=root.size_bytes,
            format=ImageFormat.QCOW2,
            state=VolumeState.ALLOCATED,
        )
    )
    for i, disk in enumerate(disks, start=1):
        session.add(
            Volume(
                name=f"DATA-{vm.id}-{i}",
                account_id=account.id,  # type: ignore[arg-type]
                domain_id=account.domain_id,
                zone_id=zone.id,  # type: ignore[arg-type]
                vm_id=vm.id,
                device_id=i,
                volume_type=VolumeType.DATADISK,
                disk_offering_id=disk.id,
                size_bytes=disk.disk_size_bytes,
                format=ImageFormat.QCOW2,
                state=VolumeState.ALLOCATED,
            )
        )
    session.add(VmLifecycle(vm_id=vm.id))  # type: ignore[arg-type]
    # Members from the start: the DeployVM job's placement (and any other placement
    # meanwhile) already keeps the group's VMs apart, or together.
    for group in groups:
        session.add(AffinityGroupMember(group_id=group.id, vm_id=vm.id))  # type: ignore[arg-type]
    session.flush()
    params: dict[str, Any] = {
        "networks": [n.id for n in networks],
        "ip_address": ip_address,
        "affinity_groups": [g.uuid for g in groups],
    }
    if request.host:
        if not caller.is_admin:
            raise PermissionDenied(f"{label}: only an admin may pin a host", field="host")
        host = resolve(session, Host, request.host, "host", field="host")
        if host.zone_id != zone.id:
            raise InvalidParameter(
                f"{label}: host '{host.name}' is not in zone '{zone.name}'", field="host"
            )
        params["host"] = host.uuid
    record_event(
        session,
        caller,
        "VM.CREATE",
        "VirtualMachine",
        vm,
        f"deploy VM '{name}' ({offering.name}{_custom_note(offering, sizes)}, "
        f"{'ISO' if root.from_iso else 'template'} '{template.name}') in zone '{zone.name}'"
        + (f", affinity groups {', '.join(g.name for g in groups)}" if groups else ""),
    )
    return vm, params


def vm_sizes(label: str, offering: ServiceOffering, request: DeployRequest) -> tuple[int, int, int]:
    """The VM's CPU count, speed and memory: the offering's, or (customized offering) the
    request's within its limits."""
    given = (request.cpu_count, request.cpu_mhz, request.memory_bytes)
    if not offering.is_customized:
        if any(v is not None for v in given):
            raise InvalidParameter(
                f"{label}: service offering '{offering.name}' is not customized: its sizes "
                f"are fixed ({offering.cpu_count} x {offering.cpu_mhz} MHz, "
                f"{custom_sizes.human_memory(offering.memory_bytes)}); give no CPU count, "
                "speed or memory",
                field="offering",
            )
        return offering.cpu_count, offering.cpu_mhz, offering.memory_bytes
    limits = custom_sizes.size_limits(offering)
    cpu_count, cpu_mhz, memory = (
        default if value is None else value
        for value, default in zip(
            given, (offering.cpu_count, offering.cpu_mhz, offering.memory_bytes), strict=True
        )
    )
    return custom_sizes.check_custom_sizes(label, limits, cpu_count, cpu_mhz, memory)


def _custom_note(offering: ServiceOffering, sizes: tuple[int, int, int]) -> str:
    if not offering.is_customized:
        return ""
    return f": {sizes[0]} x {sizes[1]} MHz, {custom_sizes.human_memory(sizes[2])}"


def affinity_groups_for(
    session: Session, label: str, account: Account, refs: Sequence[str]
) -> list[AffinityGroup]:
    """The account's affinity groups named by `refs` (name or UUID), each once."""
    found: list[AffinityGroup] = []
    for ref in refs:
        group = session.exec(
            select(AffinityGroup).where(
                AffinityGroup.account_id == account.id,
                (AffinityGroup.uuid == str(ref)) | (AffinityGroup.name == str(ref)),
            )
        ).first()
        if group is None:
            raise NotFound(
                f"{label}: affinity group '{ref}' does not exist for account '{account.name}'",
                field="affinity_groups",
            )
        if any(g.id == group.id for g in found):
            raise InvalidParameter(
                f"{label}: affinity group '{group.name}' is named twice", field="affinity_groups"
            )
        found.append(group)
    return found


def deploy_vm(caller: Caller, request: DeployRequest) -> tuple[VirtualMachine, Job]:
    """Validate, create the VM (Starting) and submit its DeployVM job, in one transaction."""
    from engine.jobs import submit_job

    with caller.db.write() as session:
        vm, params = prepare_deploy(session, caller, request)
        job = submit_job(
            caller,
            DEPLOY_JOB,
            resource_type="VirtualMachine",
            resource_uuid=vm.uuid,
            resource_name=vm.name,
            params=params,
            session=session,
        )
    return vm, job


# --- the job ---------------------------------------------------------------------------


def load_vm(session: Session, vm_uuid: str | None) -> VirtualMachine:
    vm = session.exec(select(VirtualMachine).where(VirtualMachine.uuid == str(vm_uuid))).first()
    if vm is None:
        raise NotFound(f"VM '{vm_uuid}' does not exist", field="vm")
    return vm


def _done(
    ctx: StepContext, vm: VirtualMachine, step: str, percent: int, message: str, **data: Any
) -> None:
    ctx.progress(percent, message)
    step_done(ctx, vm, step, cancellable=True, **data)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, StratusError):
        return str(exc)
    return f"internal error: {type(exc).__name__}: {exc}"


def _volume_requests(session: Session, vm: VirtualMachine) -> list[tuple[Volume, VolumeRequest]]:
    offering = session.get(ServiceOffering, vm.service_offering_id)
    volumes = list(
        session.exec(
            select(Volume)
            .where(Volume.vm_id == vm.id, col(Volume.removed).is_(None))
            .order_by(col(Volume.device_id), col(Volume.id))
        )
    )
    pairs = []
    for volume in volumes:
        tags = offering.storage_tags if offering is not None else ""
        if volume.disk_offering_id is not None:
            disk = session.get(DiskOffering, volume.disk_offering_id)
            tags = disk.storage_tags if disk is not None else ""
        request = VolumeRequest(
            size_bytes=volume.size_bytes,
            storage_tags=tags,
            name=volume.name,
            volume_id=volume.id,
        )
        pairs.append((volume, request))
    return pairs


def place(ctx: StepContext, vm: VirtualMachine, avoid: list[str]) -> Host:
    """Place the VM (claim capacity) and copy host, pod, cluster and pools onto its rows."""
    with ctx.db.read() as session:
        zone = session.get(Zone, vm.zone_id)
        account = session.get(Account, vm.account_id)
        template = session.get(Template, vm.template_id)
        assert zone is not None and account is not None
        volumes = _volume_requests(session, vm)
    request = PlacementRequest(
        zone=zone.uuid,
        vm=vm.uuid,
        account=account.uuid,
        template=template.uuid if template is not None else None,
        volumes=[r for _v, r in volumes],
        avoid=Avoid(hosts=frozenset(avoid)),
        pinned_host=ctx.params.get("host"),
        affinity_groups=tuple(ctx.params.get("affinity_groups") or ()),
    )
    plan = place_vm(ctx.caller, request, explain_plan=True)
    summary = plan.explanation.summary() if plan.explanation is not None else plan.how
    with ctx.db.read() as session:
        host = session.get(Host, plan.host_id)
        assert host is not None
    try:
        # Connect before the VM names the host: a test-driver host re-defines, on connect,
        # the domains the database places on it, and this one is not ready yet.
        hosts_of(ctx).for_host(host).connect()
    finally:
        with ctx.db.write() as session:
            row = session.get(VirtualMachine, vm.id)
            assert row is not None
            row.host_id, row.pod_id, row.cluster_id = plan.host_id, plan.pod_id, plan.cluster_id
            row.update_count += 1
            for placed in plan.volumes:
                volume_id = volumes[placed.position][0].id
                volume = session.get(Volume, volume_id)
                assert volume is not None
                volume.pool_id = placed.pool_id
                session.add(volume)
            set_reason(session, vm.id, "", placement_summary=summary)  # type: ignore[arg-type]
            vm.host_id, vm.pod_id, vm.cluster_id = plan.host_id, plan.pod_id, plan.cluster_id
    _done(
        ctx,
        vm,
        "placed",
        20,
        f"placed on host '{plan.host_name}': {summary}",
        host_id=plan.host_id,
        host=plan.host_name,
        claim=plan.claim_uuid or "",
        summary=summary,
        pools=[p.pool_name for p in plan.volumes],
    )
    return host


def allocate_nics(ctx: StepContext, vm: VirtualMachine) -> list[str]:
    """A NIC with an address on each of the VM's networks (the first one is the default;
    it gets the requested fixed address, if any)."""
    network_ids: list[int] = list(ctx.params.get("networks") or [])
    fixed = ctx.params.get("ip_address")
    with ctx.db.write() as session:
        row = session.get(VirtualMachine, vm.id)
        assert row is not None
        addresses = []
        for i, network_id in enumerate(network_ids):
            network = session.get(GuestNetwork, network_id)
            if network is None:
                raise NotFound(f"VM '{vm.name}': network #{network_id} no longer exists")
            nic = add_nic(
                session, row, network, address=fixed if i == 0 else None, is_default=i == 0
            )
            addresses.append(nic.address)
    _done(ctx, vm, "nics", 35, f"addresses {', '.join(addresses) or 'none'}", addresses=addresses)
    return addresses


def create_volumes(ctx: StepContext, vm: VirtualMachine, host: Host) -> None:
    """Create each volume on its pool through the host: the root from the template (a full
    copy; a linked clone on a test-driver host, which cannot copy files), data volumes
    blank."""
    hc = hosts_of(ctx).for_host(host)
    with ctx.db.read() as session:
        volumes = [
            (v, session.get(StoragePool, v.pool_id)) for v, _r in _volume_requests(session, vm)
        ]
    template_path = template_format = None
    for volume, pool in volumes:
        assert pool is not None, f"volume {volume.name} was not placed"
        storage.ensure_dir_pool(hc, pool.libvirt_pool_name, pool.path)
        file_name = cleanup.volume_file_name(volume)
        if volume.volume_type == VolumeType.ROOT and volume.template_id is not None:
            if template_path is None:
                path, template_format = template_file(ctx.db, volume.template_id, vm.zone_id)
                template_path = str(path)
            info = storage.create_volume_from_template(
                hc,
                pool.libvirt_pool_name,
                file_name,
                template_path,
                template_format,  # type: ignore[arg-type]
                size_bytes=volume.size_bytes,
                linked=is_simulated(host.uri),
            )
        else:
            info = storage.create_volume(
                hc, pool.libvirt_pool_name, file_name, volume.size_bytes, "qcow2"
            )
        with ctx.db.write() as session:
            row = session.get(Volume, volume.id)
            assert row is not None
            row.path, row.state = info.name, VolumeState.READY
            row.size_bytes = info.capacity_bytes
            row.update_count += 1
        _done(
            ctx,
            vm,
            "volume",
            50,
            f"volume {volume.name} created on '{pool.name}'",
            volume=volume.uuid,
            pool=pool.libvirt_pool_name,
            file=info.name,
        )


def define(ctx: StepContext, vm: VirtualMachine, host: Host) -> None:
    hc = hosts_of(ctx).for_host(host)
    domain_type = guest_domain_type(hc)
    with ctx.db.read() as session:
        row = session.get(VirtualMachine, vm.id)
        xml = domain_xml(session, row, domain_type)  # type: ignore[arg-type]
    domains.define_domain(hc, xml)
    _done(
        ctx,
        vm,
        "defined",
        70,
        f"domain {vm.instance_name} defined on '{host.name}'",
        host_id=host.id,
        name=vm.instance_name,
    )


def start(ctx: StepContext, vm: VirtualMachine, host: Host) -> None:
    domains.start_domain(hosts_of(ctx).for_host(host), vm.instance_name)
    _done(
        ctx,
        vm,
        "started",
        90,
        f"domain {vm.instance_name} started on '{host.name}'",
        host_id=host.id,
    )


def _undo(ctx: StepContext, vm: VirtualMachine, *, retry: bool = False) -> str:
    host_ids = [int(d["host_id"]) for s, d in ctx.steps if "host_id" in d]
    done, failed = cleanup.take_everything_back(
        ctx.caller, hosts_of(ctx), vm.uuid, host_ids=host_ids, keep_volume_rows=retry
    )
    return cleanup.describe(done, failed)


def _deploy(ctx: StepContext, vm: VirtualMachine) -> dict[str, Any]:
    with ctx.db.read() as session:
        retries = int(effective_value(session, "start.retry"))
    failures: list[str] = []
    avoid: list[str] = []
    while True:
        try:
            host = place(ctx, vm, avoid)
        except StratusError as exc:
            if failures:
                raise DeployFailed(
                    f"VM '{vm.name}': start failed on {'; '.join(failures)}; no other host: {exc}"
                ) from exc
            raise
        allocate_nics(ctx, vm)
        create_volumes(ctx, vm, host)
        define(ctx, vm, host)
        try:
            start(ctx, vm, host)
            break
        except StratusError as exc:
            failures.append(f"host '{host.name}' ({exc})")
            undone = _undo(ctx, vm, retry=True)
            ctx.record_step("retry", failed_host=host.name, reason=str(exc), undone=undone)
            if len(failures) > retries:
                raise DeployFailed(
                    f"VM '{vm.name}': start failed on {'; '.join(failures)}; "
                    f"start.retry ({retries}) exhausted"
                ) from exc
            avoid.append(host.uuid)
            vm.host_id = None
    with ctx.db.write() as session:
        row = session.get(VirtualMachine, vm.id)
        assert row is not None
        transition(
            session,
            row,
            VmState.STARTING,
            VmState.RUNNING,
            what="finish its deploy",
            power_state=PowerState.POWER_ON,
            power_state_updated=utcnow(),
            last_host_id=host.id,
        )
        summary = session.get(VmLifecycle, vm.id)
        record_event(
            session,
            ctx.caller,
            "VM.START",
            "VirtualMachine",
            row,
            f"VM '{vm.name}' deployed and running on host '{host.name}'",
        )
    ctx.progress(100, f"running on host '{host.name}'")
    return {
        "vm": vm.uuid,
        "host": host.name,
        "retries": len(failures),
        "placement": summary.placement_summary if summary is not None else "",
    }


def _fail(ctx: StepContext, vm: VirtualMachine, reason: str, undone: str) -> str:
    """VM Starting → Error with the reason (a concurrent move is logged, not fought);
    returns what was undone, now with the affinity groups it left."""
    with ctx.db.write() as session:
        row = session.get(VirtualMachine, vm.id)
        assert row is not None
        try:
            transition(
                session,
                row,
                VmState.STARTING,
                VmState.ERROR,
                what="fail its deploy",
                host_id=None,
                power_state=PowerState.POWER_OFF,
            )
        except StateConflict as exc:
            log.warning("after a failed deploy: %s", exc)
        # A VM that never ran leaves its affinity groups: it must not keep a later
        # member off a host, nor count as one.
        left = session.exec(
            select(AffinityGroupMember).where(AffinityGroupMember.vm_id == row.id)
        ).all()
        for member in left:
            session.delete(member)
        if left:
            undone += f"; left {len(left)} affinity group(s)"
        set_reason(session, row.id, reason)  # type: ignore[arg-type]
        record_event(
            session,
            ctx.caller,
            "VM.CREATE",
            "VirtualMachine",
            row,
            f"deploy of VM '{vm.name}' failed: {reason}; undone: {undone}",
            level="ERROR",
            state="Failed",
        )
    return undone


def run_deploy(ctx: StepContext) -> dict[str, Any]:
    """The DeployVM job: place → NICs → volumes → define → start → Running."""
    with ctx.db.read() as session:
        vm = load_vm(session, ctx.resource_uuid)
    if vm.state != VmState.STARTING:
        raise StateConflict(f"VM '{vm.name}' is {vm.state}, not Starting; nothing to deploy")
    try:
        return _deploy(ctx, vm)
    except BaseException as exc:
        with ctx.db.read() as session:
            if load_vm(session, vm.uuid).state != VmState.STARTING:
                raise  # it got to Running (or someone moved it): nothing to take back
        reason = _reason(exc)
        try:
            undone = _undo(ctx, vm)
        except Exception as undo_exc:  # the undo's own failure must not hide the first one
            log.exception("undo of the deploy of VM '%s' failed", vm.name)
            undone = f"undo failed: {_reason(undo_exc)}"
        undone = _fail(ctx, vm, reason, undone)
        if isinstance(exc, DeployFailed):
            raise DeployFailed(f"{exc}; undone: {undone}") from exc
        raise DeployFailed(f"VM '{vm.name}': deploy failed: {reason}; undone: {undone}") from exc


def recover_deploy(ctx: StepContext) -> str:
    """Undo a DeployVM whose process died: every recorded step (and any unrecorded side
    effect, found by name), then VM Starting → Error."""
    with ctx.db.read() as session:
        vm = load_vm(session, ctx.resource_uuid)
    if vm.state != VmState.STARTING:
        return f"VM '{vm.name}' is {vm.state}: its deploy had finished; nothing undone"
    last = ctx.steps[-1][0] if ctx.steps else "none"
    undone = _undo(ctx, vm)
    cancelled = getattr(ctx, "cancelled", lambda: False)()
    if cancelled and not ctx.steps:  # cancelled while Pending (engine.jobs.cancel_job)
        reason = "its deploy was cancelled before it started"
    else:
        reason = f"the process running its deploy died (last step: {last})"
    undone = _fail(ctx, vm, reason, undone)
    return f"VM '{vm.name}' is in Error; undone: {undone}"
