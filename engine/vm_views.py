"""What the console's VM actions and deploy wizard show: plain values, no front end query.

- `vm_summaries(caller, refs)`: one line of facts per VM (state, host, sizes), in name
  order, for the confirmations of single and bulk actions.
- `migration_targets(caller, vm)`: every host of the VM's cluster with whether a live
  migration there would be accepted now and, if not, why (the same checks `migrate_vm`
  makes: not the VM's own host, Up and Enabled, and placement with the host pinned).
- `offering_choices(caller, vm)`: the active user service offerings a Stopped VM may
  change to, its current one marked.
- `deploy_choices(caller, zone)`: what the deploy wizard offers in a zone (templates ready
  there, offerings with a customized one's size limits, disk offerings, guest networks,
  the account's affinity groups with their members, hosts for an admin's pin).
- `deploy_preview(caller, request, count, host)`: where a deploy would go now and why
  (engine.placement.preview, with the sizes, template, disks and affinity groups the
  deploy job asks for); an `InsufficientCapacity` names what excluded each host, and
  says so when an anti-affinity group leaves fewer fitting hosts than VMs to deploy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlmodel import Session, col, func, select

from engine.compute.deploy import DeployRequest, affinity_groups_for, root_disk, vm_sizes
from engine.context import Caller
from engine.custom_sizes import SizeLimits, size_limits
from engine.errors import InsufficientCapacity, InvalidParameter, NotFound
from engine.lookup import resolve
from engine.models import (
    Account,
    AffinityGroup,
    AffinityGroupMember,
    AffinityGroupType,
    Cluster,
    DiskOffering,
    GuestNetwork,
    Host,
    HostStatus,
    ImageFormat,
    ImageStore,
    ResourceState,
    ServiceOffering,
    Template,
    TemplateStoreRef,
    VirtualMachine,
    VmState,
    Zone,
)
from engine.offerings import tag_list
from engine.placement import PlacementRequest, Plan, VolumeRequest, preview
from engine.placement.explain import Explanation

MAX_LISTED = 200


# --- VM facts for confirmations -----------------------------------------------------------


@dataclass(frozen=True)
class VmSummary:
    uuid: str
    name: str
    state: str
    host: str | None
    cpu_count: int
    cpu_mhz: int
    memory_bytes: int

    @property
    def line(self) -> str:
        where = f" on host {self.host}" if self.host else ""
        return (
            f"VM {self.name} ({self.state}{where}), {self.cpu_count} x {self.cpu_mhz} MHz, "
            f"{_gib(self.memory_bytes)}"
        )


def _gib(n: int) -> str:
    value = n / 2**30
    return f"{value:.0f} GiB" if value >= 1 and value == int(value) else f"{n // 2**20} MiB"


def vm_summaries(caller: Caller, refs: Sequence[str]) -> list[VmSummary]:
    """The VMs named by UUID (or name) in `refs`, in name order; unknown ones raise NotFound."""
    found: dict[int, VmSummary] = {}
    with caller.db.read() as session:
        for ref in refs:
            vm = resolve(session, VirtualMachine, ref, "VM", field="vm")
            host = session.get(Host, vm.host_id) if vm.host_id is not None else None
            found[vm.id] = VmSummary(  # type: ignore[index]
                vm.uuid,
                vm.name,
                vm.state,
                host.name if host is not None else None,
                vm.cpu_count,
                vm.cpu_mhz,
                vm.memory_bytes,
            )
    return sorted(found.values(), key=lambda s: (s.name, s.uuid))


# --- migration targets ---------------------------------------------------------------------


@dataclass(frozen=True)
class MigrationTarget:
    host_uuid: str
    host: str
    status: str
    resource_state: str
    fits: bool
    reason: str  # why not (placement's words), or why it fits


@dataclass(frozen=True)
class MigrationTargets:
    vm_uuid: str
    vm: str
    state: str
    host: str | None
    cluster: str | None
    targets: tuple[MigrationTarget, ...]
    note: str = ""  # why nothing can be chosen at all (a VM that is not Running ...)

    @property
    def fitting(self) -> int:
        return sum(t.fits for t in self.targets)


def _refusal(error: InsufficientCapacity) -> str:
    """The reason placement gives for the one (pinned) host: the filter that excluded it."""
    explanation: Explanation | None = getattr(error, "explanation", None)
    if explanation is not None:
        for result in explanation.filters:
            if result.excluded and result.filter != "pinned host":
                return result.reason
    return str(error)


def migration_targets(caller: Caller, vm_ref: str) -> MigrationTargets:
    with caller.db.read() as session:
        vm = resolve(session, VirtualMachine, vm_ref, "VM", field="vm")
        zone = session.get(Zone, vm.zone_id)
        account = session.get(Account, vm.account_id)
        cluster = session.get(Cluster, vm.cluster_id) if vm.cluster_id is not None else None
        current = session.get(Host, vm.host_id) if vm.host_id is not None else None
        hosts = (
            list(
                session.exec(
                    select(Host)
                    .where(Host.cluster_id == vm.cluster_id)
                    .order_by(col(Host.name), col(Host.id))
                    .limit(MAX_LISTED)
                )
            )
            if vm.cluster_id is not None
            else []
        )
    assert zone is not None and account is not None
    note = ""
    if vm.state != VmState.RUNNING:
        note = f"VM {vm.name} is {vm.state}: only a Running VM is live-migrated"
    elif cluster is None:
        note = f"VM {vm.name} has no cluster"
    targets = []
    for host in hosts:
        fits, reason = False, ""
        if current is not None and host.id == current.id:
            reason = "the VM runs here"
        elif host.status != HostStatus.UP or host.resource_state != ResourceState.ENABLED:
            reason = "not Up and Enabled"
        else:
            try:
                preview(
                    caller,
                    PlacementRequest(
                        zone=zone.uuid,
                        cpu_count=vm.cpu_count,
                        cpu_mhz=vm.cpu_mhz,
                        memory_bytes=vm.memory_bytes,
                        account=account.uuid,
                        pinned_host=host.uuid,
                    ),
                )
                fits = True
                reason = (
                    f"fits: room for {vm.cpu_count} x {vm.cpu_mhz} MHz and {_gib(vm.memory_bytes)}"
                )
            except InsufficientCapacity as exc:
                reason = _refusal(exc)
        targets.append(
            MigrationTarget(
                host.uuid, host.name, host.status, host.resource_state, fits and not note, reason
            )
        )
    return MigrationTargets(
        vm.uuid,
        vm.name,
        vm.state,
        current.name if current is not None else None,
        cluster.name if cluster is not None else None,
        tuple(targets),
        note,
    )


# --- change offering -------------------------------------------------------------------------


@dataclass(frozen=True)
class OfferingChoice:
    uuid: str
    name: str
    cpu_count: int
    cpu_mhz: int
    memory_bytes: int
    current: bool
    # A customized offering: the VM names its own sizes within these limits.
    limits: SizeLimits | None = None

    @property
    def line(self) -> str:
        if self.limits is not None:
            limits = self.limits
            text = (
                f"{self.name}: customized, {limits.range_text('cpu_count')}, "
                f"{limits.range_text('cpu_mhz')}, {limits.range_text('memory_bytes')}"
            )
        else:
            text = f"{self.name}: {self.cpu_count} x {self.cpu_mhz} MHz, {_gib(self.memory_bytes)}"
        return text + ("  (current)" if self.current else "")


def offering_choices(caller: Caller, vm_ref: str) -> list[OfferingChoice]:
    """The active user offerings a Stopped VM may change to; a customized one (the VM
    then names its sizes) carries its limits. The current one is marked."""
    with caller.db.read() as session:
        vm = resolve(session, VirtualMachine, vm_ref, "VM", field="vm")
        rows = session.exec(
            select(ServiceOffering)
            .where(
                ServiceOffering.state == "Active",
                col(ServiceOffering.is_system).is_(False),
            )
            .order_by(
                col(ServiceOffering.cpu_count),
                col(ServiceOffering.memory_bytes),
                col(ServiceOffering.name),
            )
            .limit(MAX_LISTED)
        )
        return [
            OfferingChoice(
                o.uuid,
                o.name,
                o.cpu_count,
                o.cpu_mhz,
                o.memory_bytes,
                # A customized current offering may still be chosen: new sizes of its own.
                o.id == vm.service_offering_id and not o.is_customized,
                size_limits(o) if o.is_customized else None,
            )
            for o in rows
        ]


# --- the deploy wizard -------------------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    uuid: str
    name: str
    note: str = ""  # sizes, CIDR, state ...


@dataclass(frozen=True)
class DeployChoices:
    zones: tuple[Choice, ...]
    zone: Choice | None  # the zone the rest is for
    templates: tuple[Choice, ...] = ()
    isos: tuple[Choice, ...] = ()
    offerings: tuple[Choice, ...] = ()
    disk_offerings: tuple[Choice, ...] = ()
    networks: tuple[Choice, ...] = ()
    hosts: tuple[Choice, ...] = ()
    affinity_groups: tuple[Choice, ...] = ()  # the account's; note: type and members
    # offering UUID -> what a customized offering lets each VM choose
    custom: dict[str, SizeLimits] = field(default_factory=dict)


def _templates(session: Session, zone: Zone, *, iso: bool) -> list[Choice]:
    format_test = Template.format == ImageFormat.ISO if iso else Template.format != ImageFormat.ISO
    rows = session.exec(
        select(Template)
        .join(TemplateStoreRef, col(TemplateStoreRef.template_id) == Template.id)
        .join(ImageStore, col(ImageStore.id) == TemplateStoreRef.store_id)
        .where(
            ImageStore.zone_id == zone.id,
            Template.state == "Ready",
            TemplateStoreRef.state == "Ready",
            format_test,
            col(Template.removed).is_(None),
        )
        .order_by(col(Template.name), col(Template.id))
        .distinct()
        .limit(MAX_LISTED)
    )
    return [Choice(t.uuid, t.name, f"{_gib(t.size_bytes)}, {t.format}") for t in rows]


def _offering_choice(o: ServiceOffering) -> Choice:
    if o.is_customized:
        limits = size_limits(o)
        note = (
            f"custom: {limits.range_text('cpu_count')}, {limits.range_text('cpu_mhz')}, "
            f"{limits.range_text('memory_bytes')}"
        )
    else:
        note = f"{o.cpu_count} x {o.cpu_mhz} MHz, {_gib(o.memory_bytes)}"
    return Choice(o.uuid, o.name, note)


def affinity_group_choices(session: Session, account_id: int | None) -> list[Choice]:
    """The account's host affinity and anti-affinity groups with their live members
    (explicit dedication is the admin's tool, not a deploy choice)."""
    if account_id is None:
        return []
    members = (
        select(AffinityGroupMember.group_id, func.count().label("n"))
        .join(VirtualMachine, col(VirtualMachine.id) == AffinityGroupMember.vm_id)
        .where(col(VirtualMachine.removed).is_(None))
        .group_by(col(AffinityGroupMember.group_id))
        .subquery()
    )
    rows = session.exec(
        select(AffinityGroup, members.c.n)
        .outerjoin(members, members.c.group_id == AffinityGroup.id)
        .where(
            AffinityGroup.account_id == account_id,
            col(AffinityGroup.group_type).in_(
                [AffinityGroupType.HOST_ANTI_AFFINITY, AffinityGroupType.HOST_AFFINITY]
            ),
        )
        .order_by(col(AffinityGroup.name), col(AffinityGroup.id))
        .limit(MAX_LISTED)
    )
    return [
        Choice(g.uuid, g.name, f"{g.group_type}, {n or 0} VM{'' if n == 1 else 's'}")
        for g, n in rows
    ]


def deploy_choices(caller: Caller, zone_ref: str | None = None) -> DeployChoices:
    """The zones, and for `zone_ref` (default: the first zone) what a deploy there offers."""
    with caller.db.read() as session:
        zones = list(session.exec(select(Zone).order_by(col(Zone.name)).limit(MAX_LISTED)))
        zone_choices = tuple(Choice(z.uuid, z.name, z.network_type) for z in zones)
        if zone_ref is not None:
            zone: Zone | None = resolve(session, Zone, zone_ref, "zone", field="zone")
        else:
            zone = zones[0] if zones else None
        if zone is None:
            return DeployChoices(zone_choices, None)
        offerings = list(
            session.exec(
                select(ServiceOffering)
                .where(ServiceOffering.state == "Active", col(ServiceOffering.is_system).is_(False))
                .order_by(
                    col(ServiceOffering.cpu_count),
                    col(ServiceOffering.memory_bytes),
                    col(ServiceOffering.name),
                )
                .limit(MAX_LISTED)
            )
        )
        disks = session.exec(
            select(DiskOffering)
            .where(DiskOffering.state == "Active", DiskOffering.disk_size_bytes > 0)
            .order_by(col(DiskOffering.disk_size_bytes), col(DiskOffering.name))
            .limit(MAX_LISTED)
        )
        networks = session.exec(
            select(GuestNetwork)
            .where(GuestNetwork.zone_id == zone.id)
            .order_by(col(GuestNetwork.name), col(GuestNetwork.id))
            .limit(MAX_LISTED)
        )
        hosts = session.exec(
            select(Host)
            .where(Host.zone_id == zone.id)
            .order_by(col(Host.name), col(Host.id))
            .limit(MAX_LISTED)
        )
        return DeployChoices(
            zone_choices,
            Choice(zone.uuid, zone.name, zone.network_type),
            tuple(_templates(session, zone, iso=False)),
            tuple(_templates(session, zone, iso=True)),
            tuple(_offering_choice(o) for o in offerings),
            tuple(Choice(d.uuid, d.name, _gib(d.disk_size_bytes)) for d in disks),
            tuple(
                Choice(n.uuid, n.name, f"{n.guest_type} {n.cidr or ''}".strip()) for n in networks
            ),
            tuple(Choice(h.uuid, h.name, f"{h.status}/{h.resource_state}") for h in hosts),
            tuple(affinity_group_choices(session, caller.account_id)),
            {o.uuid: size_limits(o) for o in offerings if o.is_customized},
        )


@dataclass(frozen=True)
class DeployPreview:
    plan: Plan
    explanation: Explanation
    pools: tuple[str, ...]  # one per volume: root first, then each data disk
    count: int
    cpu_count: int = 0
    cpu_mhz: int = 0
    memory_bytes: int = 0
    custom: bool = False  # the sizes are the VM's own (customized offering)
    affinity_groups: tuple[Choice, ...] = ()  # the groups it joins, note: type and members
    boot_iso: str = ""  # deployed from this ISO: it boots onto a blank root disk

    @property
    def size_line(self) -> str:
        text = f"{self.cpu_count} x {self.cpu_mhz} MHz, {_gib(self.memory_bytes)}"
        return text + (" (custom)" if self.custom else "")


def deploy_preview(
    caller: Caller, request: DeployRequest, *, host: str | None = None, count: int = 1
) -> DeployPreview:
    """Where the deploy of `request` would go now, and why (nothing is claimed).

    Raises InsufficientCapacity (its message names the reasons) when nothing fits, and
    NotFound / InvalidParameter for a reference that does not resolve.
    """
    label = f"VM '{request.name}'"
    with caller.db.read() as session:
        zone = resolve(session, Zone, request.zone, "zone", field="zone")
        offering = resolve(session, ServiceOffering, request.offering, "offering", field="offering")
        template = resolve(session, Template, request.template, "template", field="template")
        disks = [
            resolve(session, DiskOffering, ref, "disk offering", field="disk_offerings")
            for ref in request.disk_offerings
        ]
        if request.account is not None:
            account = resolve(session, Account, request.account, "account")
        else:
            account = session.get(Account, caller.account_id)
            if account is None:
                raise InvalidParameter(f"{label}: the caller has no account", field="account")
        sizes = vm_sizes(label, offering, request)
        groups = affinity_groups_for(session, label, account, request.affinity_groups)
        group_notes = {c.uuid: c for c in affinity_group_choices(session, account.id) if c.uuid}
    root = root_disk(label, template, disks)
    if root.offering is not None:  # an ISO's blank root disk, sized by the first offering
        disks = disks[1:]
    root_tags = root.offering.storage_tags if root.offering is not None else offering.storage_tags
    volumes = [VolumeRequest(size_bytes=root.size_bytes, storage_tags=root_tags, name="ROOT")]
    volumes += [
        VolumeRequest(size_bytes=d.disk_size_bytes, storage_tags=d.storage_tags, name=f"DATA-{i}")
        for i, d in enumerate(disks, start=1)
    ]
    if offering.is_customized:
        # The VM's own sizes; the offering still brings its host tags and planner.
        request_sizes: dict = {
            "cpu_count": sizes[0],
            "cpu_mhz": sizes[1],
            "memory_bytes": sizes[2],
            "template_tags": tuple(tag_list(offering.host_tags)),
            "planner": offering.deployment_planner,
        }
    else:
        request_sizes = {"offering": offering.uuid}
    plan = preview(
        caller,
        PlacementRequest(
            zone=zone.uuid,
            volumes=volumes,
            account=account.uuid,
            template=template.uuid,
            pinned_host=host,
            affinity_groups=tuple(g.uuid for g in groups),
            **request_sizes,
        ),
    )
    why = plan.explanation
    if why is None:  # preview always explains
        raise NotFound("placement gave no explanation")
    spread = [g for g in groups if g.group_type == AffinityGroupType.HOST_ANTI_AFFINITY]
    if spread and count > why.fitting:
        # Each VM of the deploy joins the group: N VMs need N different hosts that fit.
        names = ", ".join(f"'{g.name}'" for g in spread)
        error = InsufficientCapacity(
            f"{label}: anti-affinity group {names} puts each of the {count} VMs on its own "
            f"host, but only {why.fitting} fit: {why.summary()}",
            field="affinity_groups",
        )
        error.explanation = why  # type: ignore[attr-defined]
        raise error
    pools = tuple(p.pool_name for p in sorted(plan.volumes, key=lambda p: p.position))
    return DeployPreview(
        plan,
        why,
        pools,
        count,
        *sizes,
        custom=offering.is_customized,
        affinity_groups=tuple(
            group_notes.get(g.uuid, Choice(g.uuid, g.name, g.group_type)) for g in groups
        ),
        boot_iso=template.name if root.from_iso else "",
    )
