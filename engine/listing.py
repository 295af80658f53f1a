"""Resource listings for the console's table views: one page at a time, in the database.

Every view (`VIEWS`) names a table, the columns it shows, the columns it can sort by, the
columns the filter matches and the parents it can be scoped to (a zone's pods, a host's
VMs). `list_page` returns one page in keyset order: ORDER BY the sort column, then the
row's unique tiebreak (its id), continuing strictly after (or before) the cursor of the
last row seen. No query ever reads more rows than the page it returns (plus one, to know
whether there is more), so a 100,000-row view pages as fast as a 100-row one when the
sort column is indexed (name, created, the primary key).

The filter is a substring match (SQL LIKE, case-insensitive, wildcards escaped) over the
view's search columns; a leading `!` inverts it (NOT LIKE on all of them). `count_rows`
counts at most `cap` matching rows, so a count never scans more than that.

Engine code: no textual here; the console renders the cells as they come.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, func, not_, or_, select
from sqlalchemy import case as sql_case
from sqlalchemy.orm import aliased
from sqlalchemy.sql import ColumnElement

from engine.context import Caller
from engine.errors import InvalidParameter, NotFound
from engine.models import (
    Account,
    Cluster,
    Configuration,
    Event,
    GuestIpAddress,
    GuestIpRange,
    GuestNetwork,
    Host,
    ImageStore,
    IpAddressState,
    Job,
    Pod,
    PodManagementAddress,
    PublicIpAddress,
    PublicIpRange,
    Snapshot,
    StoragePool,
    Template,
    VirtualMachine,
    Volume,
    Zone,
)

PAGE_SIZE = 100
COUNT_CAP = 100_000
# Only this many rows at most in one page, whatever a caller asks.
MAX_PAGE = 1000

Cursor = tuple[Any, Any]  # (sort value, tiebreak value) of a row


# --- formatting ------------------------------------------------------------------------


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _gib(value: Any) -> str:
    return "" if value is None else f"{value / 2**30:,.1f} GiB"


def _used_of(used: Any, total: Any, unit: Callable[[Any], str]) -> str:
    if not total:
        return f"{unit(used or 0)} / -"
    return f"{unit(used or 0)} / {unit(total)} ({100 * (used or 0) / total:.0f}%)"


def _ghz(value: Any) -> str:
    return f"{(value or 0) / 1000:,.1f} GHz"


def _when(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def _vlan(isolation: Any, tag: Any) -> str:
    """ "vlan 100", "vxlan 5000", "untagged" (no tag)."""
    return f"{isolation} {tag}" if tag is not None else "untagged"


def _range_and_vlan(start: Any, end: Any, isolation: Any, tag: Any) -> str:
    return "" if start is None else f"{start}-{end} · {_vlan(isolation, tag)}"


def _range_size(start: str, end: str) -> int:
    return int(ipaddress.ip_address(end)) - int(ipaddress.ip_address(start)) + 1


def _share(used: Any, total: Any) -> str:
    """ "12 / 254 (5%)": how much of a range is taken."""
    used, total = int(used or 0), int(total or 0)
    return f"{used:,} / {total:,} ({100 * used / total:.0f}%)" if total else f"{used:,} / 0"


def _addresses(used: Any, total: Any) -> str:
    return f"{int(used or 0):,} / {int(total or 0):,}"


# --- view descriptions -----------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """A shown column: its SQL expressions, and how their values become the cell text."""

    id: str
    label: str
    exprs: tuple[Any, ...]
    show: Callable[..., str] = _text
    sortable: bool = False


@dataclass(frozen=True)
class Scope:
    """A parent a view can be narrowed to: `parent_model` rows by uuid, via `column`."""

    parent_model: Any
    column: Any


@dataclass(frozen=True)
class View:
    name: str
    title: str  # plural, for headings
    singular: str  # the object kind ("VM"), for messages and detail screens
    aliases: tuple[str, ...]
    model: Any
    key: Any  # what identifies a row to the console (uuid; name for settings)
    tiebreak: Any  # unique and indexed: the second part of every ORDER BY
    columns: tuple[Column, ...]
    search: tuple[Any, ...]
    default_sort: str
    default_descending: bool = False
    joins: tuple[tuple[Any, Any], ...] = ()
    scopes: dict[str, Scope] = field(default_factory=dict)
    where: tuple[Any, ...] = ()
    # The view Enter drills into, scoped to the selected row (its scope kind is `scope_as`).
    child: str | None = None
    scope_as: str | None = None
    # The filter searches a joined table's column: counts then need the joins too.
    search_joins: bool = False

    def column(self, column_id: str) -> Column:
        for column in self.columns:
            if column.id == column_id:
                return column
        sortable = ", ".join(c.id for c in self.columns if c.sortable)
        raise InvalidParameter(
            f"view '{self.name}': no column '{column_id}' (sortable: {sortable})", field="sort"
        )

    @property
    def sortable(self) -> list[str]:
        return [c.id for c in self.columns if c.sortable]


def _views() -> dict[str, View]:
    zone_of = aliased(Zone)
    pod_of = aliased(Pod)
    cluster_of = aliased(Cluster)
    host_of = aliased(Host)
    vm_of = aliased(VirtualMachine)
    pool_of = aliased(StoragePool)
    account_of = aliased(Account)
    volume_of = aliased(Volume)
    range_of = aliased(PublicIpRange)

    # A network's guest addresses and how many are taken: two counts per shown row over
    # the (network, address) unique index, so a page costs its rows' address counts.
    network_total = (
        select(func.count())
        .where(GuestIpAddress.network_id == GuestNetwork.id)
        .correlate(GuestNetwork)
        .scalar_subquery()
    )
    network_taken = (
        select(
            func.coalesce(
                func.sum(sql_case((GuestIpAddress.state != IpAddressState.FREE, 1), else_=0)), 0
            )
        )
        .where(GuestIpAddress.network_id == GuestNetwork.id)
        .correlate(GuestNetwork)
        .scalar_subquery()
    )
    # A Basic zone's network has no CIDR of its own: its pods' guest ranges carry them.
    pod_ranges = (
        select(func.count())
        .where(GuestIpRange.network_id == GuestNetwork.id, GuestIpRange.pod_id.is_not(None))  # type: ignore[union-attr]
        .correlate(GuestNetwork)
        .scalar_subquery()
    )

    # A public range's addresses and how many are not free (ix_publicip_range_state_ip);
    # the range's size is stored, so only the taken ones are counted.
    range_taken = (
        select(func.count())
        .where(
            PublicIpAddress.range_id == PublicIpRange.id,
            PublicIpAddress.state != IpAddressState.FREE,
        )
        .correlate(PublicIpRange)
        .scalar_subquery()
    )
    # A pod's management addresses taken (ix_podmgmt_pod_state_ip). The rows are made on
    # first allocation; until then the hosts holding an address are what is taken.
    mgmt_rows = (
        select(func.count())
        .where(PodManagementAddress.pod_id == Pod.id)
        .correlate(Pod)
        .scalar_subquery()
    )
    mgmt_taken = (
        select(func.count())
        .where(
            PodManagementAddress.pod_id == Pod.id,
            PodManagementAddress.state != IpAddressState.FREE,
        )
        .correlate(Pod)
        .scalar_subquery()
    )
    pod_hosts_addressed = (
        select(func.count())
        .where(Host.pod_id == Pod.id, Host.address.is_not(None))  # type: ignore[union-attr]
        .correlate(Pod)
        .scalar_subquery()
    )
    mgmt_used = sql_case((mgmt_rows > 0, mgmt_taken), else_=pod_hosts_addressed)

    def made(model: Any) -> Column:
        return Column("created", "Created", (model.created,), _when, True)

    views = [
        View(
            name="zones",
            title="Zones",
            singular="zone",
            aliases=("zone", "z"),
            model=Zone,
            key=Zone.uuid,
            tiebreak=Zone.id,
            columns=(
                Column("name", "Name", (Zone.name,), sortable=True),
                Column("network", "Network", (Zone.network_type,)),
                Column("state", "State", (Zone.allocation_state,), sortable=True),
                Column("dns", "DNS", (Zone.dns1,)),
                made(Zone),
            ),
            search=(Zone.name, Zone.allocation_state, Zone.network_type),
            default_sort="name",
            child="pods",
            scope_as="zone",
        ),
        View(
            name="pods",
            title="Pods",
            singular="pod",
            aliases=("pod", "po"),
            model=Pod,
            key=Pod.uuid,
            tiebreak=Pod.id,
            columns=(
                Column("name", "Name", (Pod.name,), sortable=True),
                Column("zone", "Zone", (zone_of.name,)),
                Column("cidr", "CIDR", (Pod.cidr,)),
                Column("range", "Management range", (Pod.start_ip, Pod.end_ip), "{}-{}".format),
                Column("state", "State", (Pod.allocation_state,), sortable=True),
                made(Pod),
            ),
            search=(Pod.name, Pod.cidr, Pod.allocation_state),
            default_sort="name",
            joins=((zone_of, zone_of.id == Pod.zone_id),),
            scopes={"zone": Scope(Zone, Pod.zone_id)},
            child="clusters",
            scope_as="pod",
        ),
        View(
            name="clusters",
            title="Clusters",
            singular="cluster",
            aliases=("cluster", "cl"),
            model=Cluster,
            key=Cluster.uuid,
            tiebreak=Cluster.id,
            columns=(
                Column("name", "Name", (Cluster.name,), sortable=True),
                Column("pod", "Pod", (pod_of.name,)),
                Column("zone", "Zone", (zone_of.name,)),
                Column("hypervisor", "Hypervisor", (Cluster.hypervisor,)),
                Column("state", "State", (Cluster.allocation_state,), sortable=True),
                made(Cluster),
            ),
            search=(Cluster.name, Cluster.allocation_state),
            default_sort="name",
            joins=(
                (zone_of, zone_of.id == Cluster.zone_id),
                (pod_of, pod_of.id == Cluster.pod_id),
            ),
            scopes={"zone": Scope(Zone, Cluster.zone_id), "pod": Scope(Pod, Cluster.pod_id)},
            child="hosts",
            scope_as="cluster",
        ),
        View(
            name="hosts",
            title="Hosts",
            singular="host",
            aliases=("host", "ho", "no", "nodes"),
            model=Host,
            key=Host.uuid,
            tiebreak=Host.id,
            columns=(
                Column("name", "Name", (Host.name,), sortable=True),
                Column("status", "Status", (Host.status,), sortable=True),
                Column("resource", "Resource state", (Host.resource_state,)),
                Column("cluster", "Cluster", (cluster_of.name,)),
                Column("address", "Address", (Host.address,)),
                Column(
                    "cpu",
                    "CPU used",
                    (Host.cpu_used_mhz, Host.cpu_mhz, Host.cpu_cores),
                    lambda used, mhz, cores: _used_of(used, (mhz or 0) * (cores or 0), _ghz),
                ),
                Column(
                    "memory",
                    "Memory used",
                    (Host.memory_used_bytes, Host.memory_bytes),
                    lambda used, total: _used_of(used, total, _gib),
                ),
                made(Host),
            ),
            search=(Host.name, Host.status, Host.resource_state, Host.address),
            default_sort="name",
            joins=((cluster_of, cluster_of.id == Host.cluster_id),),
            scopes={
                "zone": Scope(Zone, Host.zone_id),
                "pod": Scope(Pod, Host.pod_id),
                "cluster": Scope(Cluster, Host.cluster_id),
            },
            child="vms",
            scope_as="host",
        ),
        View(
            name="vms",
            title="VMs",
            singular="VM",
            aliases=("vm", "virtualmachines", "instances", "i"),
            model=VirtualMachine,
            key=VirtualMachine.uuid,
            tiebreak=VirtualMachine.id,
            columns=(
                Column("name", "Name", (VirtualMachine.name,), sortable=True),
                Column("state", "State", (VirtualMachine.state,)),
                Column("power", "Power", (VirtualMachine.power_state,)),
                Column("host", "Host", (host_of.name,)),
                Column(
                    "cpu",
                    "vCPU",
                    (VirtualMachine.cpu_count, VirtualMachine.cpu_mhz),
                    lambda n, mhz: f"{n} x {mhz} MHz",
                ),
                Column("memory", "Memory", (VirtualMachine.memory_bytes,), _gib),
                Column("instance", "Instance", (VirtualMachine.instance_name,)),
                # Indexed (ix_vm_created), as are (zone, name) and (cluster, name) for the
                # scoped views: every sort pages as an index range.
                Column("created", "Created", (VirtualMachine.created,), _when, True),
            ),
            # The name alone: its index then answers LIKE without reading the rows, so a
            # rare match in 100,000 VMs costs ~10 ms instead of ~120 ms.
            search=(VirtualMachine.name,),
            default_sort="name",
            joins=((host_of, host_of.id == VirtualMachine.host_id),),
            scopes={
                "zone": Scope(Zone, VirtualMachine.zone_id),
                "pod": Scope(Pod, VirtualMachine.pod_id),
                "cluster": Scope(Cluster, VirtualMachine.cluster_id),
                "host": Scope(Host, VirtualMachine.host_id),
            },
            where=(VirtualMachine.removed.is_(None),),  # type: ignore[union-attr]
            scope_as="vm",
        ),
        View(
            name="vols",
            title="Volumes",
            singular="volume",
            aliases=("volumes", "volume", "vol"),
            model=Volume,
            key=Volume.uuid,
            tiebreak=Volume.id,
            columns=(
                Column("name", "Name", (Volume.name,), sortable=True),
                Column("type", "Type", (Volume.volume_type,)),
                Column("state", "State", (Volume.state,)),
                Column("size", "Size", (Volume.size_bytes,), _gib),
                Column("vm", "VM", (vm_of.name,)),
                Column("pool", "Pool", (pool_of.name,)),
                Column("id", "Id", (Volume.id,), sortable=True),
                made(Volume),
            ),
            search=(Volume.name, Volume.state, Volume.volume_type),
            default_sort="name",  # ix_volume_name keeps every page an index range
            joins=(
                (vm_of, vm_of.id == Volume.vm_id),
                (pool_of, pool_of.id == Volume.pool_id),
            ),
            scopes={
                "zone": Scope(Zone, Volume.zone_id),
                "vm": Scope(VirtualMachine, Volume.vm_id),
                "pool": Scope(StoragePool, Volume.pool_id),  # a pool's detail: its volumes
            },
            where=(Volume.removed.is_(None),),  # type: ignore[union-attr]
        ),
        View(
            name="ips",
            title="IP addresses",
            singular="public IP address",
            aliases=("ip", "addresses", "publicips"),
            model=PublicIpAddress,
            key=PublicIpAddress.uuid,
            tiebreak=PublicIpAddress.id,
            columns=(
                # Sorted by the address as a number (ix_publicip_ip), shown as text.
                Column(
                    "address",
                    "Address",
                    (PublicIpAddress.ip_int, PublicIpAddress.address),
                    lambda _value, text: text,
                    True,
                ),
                Column("state", "State", (PublicIpAddress.state,)),
                Column("zone", "Zone", (zone_of.name,)),
                Column(
                    "range",
                    "Range / VLAN",
                    (range_of.start_ip, range_of.end_ip, range_of.isolation, range_of.vlan_tag),
                    _range_and_vlan,
                ),
                Column("account", "Account", (account_of.name,)),
                Column(
                    "snat",
                    "Source NAT",
                    (PublicIpAddress.source_nat,),
                    lambda snat: "yes" if snat else "",
                ),
                Column("allocated", "Allocated", (PublicIpAddress.allocated,), _when),
            ),
            # The account through an outer join: NULL for unowned rows, whatever the column
            # says, so coalesced here for `!filter` to keep them.
            search=(
                PublicIpAddress.address,
                PublicIpAddress.state,
                func.coalesce(account_of.name, ""),
            ),
            default_sort="address",
            joins=(
                (zone_of, zone_of.id == PublicIpAddress.zone_id),
                (range_of, range_of.id == PublicIpAddress.range_id),
                (account_of, account_of.id == PublicIpAddress.account_id),
            ),
            scopes={
                "zone": Scope(Zone, PublicIpAddress.zone_id),
                "network": Scope(GuestNetwork, PublicIpAddress.network_id),
                "range": Scope(PublicIpRange, PublicIpAddress.range_id),
            },
            search_joins=True,
        ),
        View(
            name="nets",
            title="Networks",
            singular="network",
            aliases=("net", "networks", "guestnetworks"),
            model=GuestNetwork,
            key=GuestNetwork.uuid,
            tiebreak=GuestNetwork.id,
            columns=(
                Column("name", "Name", (GuestNetwork.name,), sortable=True),
                Column("type", "Type", (GuestNetwork.guest_type,)),
                Column("zone", "Zone", (zone_of.name,)),
                Column(
                    "cidr",
                    "CIDR",
                    (GuestNetwork.cidr, pod_ranges),
                    lambda cidr, pods: cidr or f"{pods} pod range{'' if pods == 1 else 's'}",
                ),
                Column("gateway", "Gateway", (GuestNetwork.gateway,)),
                Column("vni", "VNI / VLAN", (GuestNetwork.isolation, GuestNetwork.vni), _vlan),
                Column("account", "Account", (account_of.name,)),
                Column("state", "State", (GuestNetwork.state,)),
                Column("addresses", "Addresses used", (network_taken, network_total), _addresses),
                made(GuestNetwork),
            ),
            search=(
                GuestNetwork.name,
                GuestNetwork.guest_type,
                GuestNetwork.cidr,
                func.coalesce(account_of.name, ""),
            ),
            default_sort="name",
            joins=(
                (zone_of, zone_of.id == GuestNetwork.zone_id),
                (account_of, account_of.id == GuestNetwork.account_id),
            ),
            scopes={"zone": Scope(Zone, GuestNetwork.zone_id)},
            search_joins=True,
            # Enter: the network's public addresses (an isolated network's source NAT).
            child="ips",
            scope_as="network",
        ),
        View(
            name="ranges",
            title="Public IP ranges",
            singular="public IP range",
            aliases=("range", "publicranges", "vlans"),
            model=PublicIpRange,
            key=PublicIpRange.uuid,
            tiebreak=PublicIpRange.id,
            columns=(
                # Sorted by the first address as a number, shown as the range.
                Column(
                    "range",
                    "Range",
                    (PublicIpRange.start_int, PublicIpRange.start_ip, PublicIpRange.end_ip),
                    lambda _n, start, end: f"{start}-{end}",
                    True,
                ),
                Column("zone", "Zone", (zone_of.name,)),
                Column("pod", "Pod", (pod_of.name,)),
                Column(
                    "gateway",
                    "Gateway",
                    (PublicIpRange.gateway, PublicIpRange.cidr),
                    lambda gw, cidr: f"{gw} ({cidr})",
                ),
                Column(
                    "vlan", "VNI / VLAN", (PublicIpRange.isolation, PublicIpRange.vlan_tag), _vlan
                ),
                Column(
                    "dedicated",
                    "Dedicated to",
                    (account_of.name, PublicIpRange.for_system),
                    lambda account, system: "system" if system else (account or ""),
                ),
                Column(
                    "used",
                    "Addresses used",
                    (range_taken, PublicIpRange.size),
                    lambda used, total: _share(used, total),
                ),
                made(PublicIpRange),
            ),
            search=(
                PublicIpRange.start_ip,
                PublicIpRange.cidr,
                PublicIpRange.gateway,
                func.coalesce(account_of.name, ""),
            ),
            default_sort="range",
            joins=(
                (zone_of, zone_of.id == PublicIpRange.zone_id),
                (pod_of, pod_of.id == PublicIpRange.pod_id),
                (account_of, account_of.id == PublicIpRange.account_id),
            ),
            scopes={"zone": Scope(Zone, PublicIpRange.zone_id)},
            search_joins=True,
            # Enter: the range's addresses (associate and release from there).
            child="ips",
            scope_as="range",
        ),
        View(
            name="mgmt",
            title="Pod management ranges",
            singular="pod",
            aliases=("management", "podranges", "private"),
            model=Pod,
            key=Pod.uuid,
            tiebreak=Pod.id,
            columns=(
                Column("name", "Pod", (Pod.name,), sortable=True),
                Column("zone", "Zone", (zone_of.name,)),
                Column("gateway", "Gateway", (Pod.gateway, Pod.cidr), lambda gw, c: f"{gw} ({c})"),
                Column("range", "Management range", (Pod.start_ip, Pod.end_ip), "{}-{}".format),
                Column(
                    "used",
                    "Addresses used",
                    (mgmt_used, Pod.start_ip, Pod.end_ip),
                    lambda used, start, end: _share(used, _range_size(start, end)),
                ),
                Column("state", "State", (Pod.allocation_state,), sortable=True),
            ),
            search=(Pod.name, Pod.cidr, Pod.start_ip),
            default_sort="name",
            joins=((zone_of, zone_of.id == Pod.zone_id),),
            scopes={"zone": Scope(Zone, Pod.zone_id)},
        ),
        View(
            name="pools",
            title="Primary storage",
            singular="storage pool",
            aliases=("pool", "primary", "storagepools"),
            model=StoragePool,
            key=StoragePool.uuid,
            tiebreak=StoragePool.id,
            columns=(
                Column("name", "Name", (StoragePool.name,), sortable=True),
                Column("status", "Status", (StoragePool.status,), sortable=True),
                Column("scope", "Scope", (StoragePool.scope,)),
                Column("zone", "Zone", (zone_of.name,)),
                Column("cluster", "Cluster", (cluster_of.name,)),
                Column(
                    "used",
                    "Used",
                    (StoragePool.used_bytes, StoragePool.capacity_bytes),
                    lambda used, total: _used_of(used, total, _gib),
                ),
                Column("allocated", "Allocated", (StoragePool.allocated_bytes,), _gib),
                Column("type", "Type", (StoragePool.pool_type,)),
            ),
            search=(StoragePool.name, StoragePool.status, StoragePool.scope),
            default_sort="name",
            joins=(
                (zone_of, zone_of.id == StoragePool.zone_id),
                (cluster_of, cluster_of.id == StoragePool.cluster_id),
            ),
            scopes={
                "zone": Scope(Zone, StoragePool.zone_id),
                "pod": Scope(Pod, StoragePool.pod_id),
                "cluster": Scope(Cluster, StoragePool.cluster_id),
            },
        ),
        View(
            name="stores",
            title="Secondary storage",
            singular="image store",
            aliases=("store", "imagestores", "secondary"),
            model=ImageStore,
            key=ImageStore.uuid,
            tiebreak=ImageStore.id,
            columns=(
                Column("name", "Name", (ImageStore.name,), sortable=True),
                Column("zone", "Zone", (zone_of.name,)),
                Column("protocol", "Protocol", (ImageStore.protocol,)),
                Column(
                    "used",
                    "Used",
                    (ImageStore.used_bytes, ImageStore.capacity_bytes),
                    lambda used, total: _used_of(used, total, _gib),
                ),
                Column(
                    "access",
                    "Access",
                    (ImageStore.read_only,),
                    lambda ro: "read-only" if ro else "read-write",
                ),
                Column("url", "URL", (ImageStore.url,)),
            ),
            search=(ImageStore.name, ImageStore.url),
            default_sort="name",
            joins=((zone_of, zone_of.id == ImageStore.zone_id),),
            scopes={"zone": Scope(Zone, ImageStore.zone_id)},
        ),
        View(
            name="templates",
            title="Templates",
            singular="template",
            aliases=("template", "tpl", "isos"),
            model=Template,
            key=Template.uuid,
            tiebreak=Template.id,
            columns=(
                Column("name", "Name", (Template.name,), sortable=True),
                Column("state", "State", (Template.state,), sortable=True),
                Column("format", "Format", (Template.format,)),
                Column("os", "OS type", (Template.os_type,)),
                Column("size", "Size", (Template.size_bytes,), _gib),
                Column("public", "Public", (Template.is_public,), lambda p: "yes" if p else "no"),
                made(Template),
            ),
            search=(Template.name, Template.state, Template.os_type, Template.format),
            default_sort="name",
            where=(Template.removed.is_(None),),  # type: ignore[union-attr]
        ),
        View(
            name="snapshots",
            title="Snapshots",
            singular="snapshot",
            aliases=("snapshot", "snap", "snaps"),
            model=Snapshot,
            key=Snapshot.uuid,
            tiebreak=Snapshot.id,
            columns=(
                Column("name", "Name", (Snapshot.name,), sortable=True),
                Column("volume", "Volume", (volume_of.name,)),
                Column("state", "State", (Snapshot.state,)),
                Column("size", "Size", (Snapshot.size_bytes,), _gib),
                Column(
                    "stored",
                    "Stored",
                    (Snapshot.physical_size_bytes,),
                    lambda v: "" if v is None else f"{v / 2**20:,.1f} MiB",
                ),
                made(Snapshot),
            ),
            search=(Snapshot.name, Snapshot.state),
            default_sort="created",
            joins=((volume_of, volume_of.id == Snapshot.volume_id),),
            scopes={
                "zone": Scope(Zone, Snapshot.zone_id),
                "volume": Scope(Volume, Snapshot.volume_id),
            },
            where=(Snapshot.removed.is_(None),),  # type: ignore[union-attr]
        ),
        View(
            name="jobs",
            title="Jobs",
            singular="job",
            aliases=("job", "j"),
            model=Job,
            key=Job.uuid,
            tiebreak=Job.id,
            columns=(
                Column("created", "Created", (Job.created,), _when, True),
                Column("type", "Job", (Job.job_type,)),
                Column("state", "State", (Job.state,)),
                Column("progress", "Progress", (Job.progress,), lambda p: f"{p}%"),
                Column(
                    "resource", "Resource", (Job.resource_type, Job.resource_name), "{} {}".format
                ),
                Column("user", "User", (Job.username,)),
                Column(
                    "message",
                    "Message",
                    (Job.progress_message, Job.error),
                    lambda m, e: e or m or "",
                ),
            ),
            search=(Job.job_type, Job.state, Job.resource_name, Job.username),
            default_sort="created",
            default_descending=True,
        ),
        View(
            name="events",
            title="Events",
            singular="event",
            aliases=("event", "ev", "audit"),
            model=Event,
            key=Event.uuid,
            tiebreak=Event.id,
            columns=(
                Column("created", "Time", (Event.created,), _when, True),
                Column("level", "Level", (Event.level,)),
                Column("user", "User", (Event.username,)),
                Column("type", "Event", (Event.event_type,), sortable=True),
                Column(
                    "resource",
                    "Resource",
                    (Event.resource_type, Event.resource_name),
                    "{} {}".format,
                ),
                Column("description", "Description", (Event.description,)),
            ),
            search=(Event.event_type, Event.username, Event.resource_name, Event.description),
            default_sort="created",
            default_descending=True,
        ),
        View(
            name="settings",
            title="Settings",
            singular="setting",
            aliases=("setting", "config", "configuration"),
            model=Configuration,
            key=Configuration.name,
            tiebreak=Configuration.name,
            columns=(
                Column("name", "Name", (Configuration.name,), sortable=True),
                Column("category", "Category", (Configuration.category,)),
                Column(
                    "value",
                    "Value",
                    (Configuration.value, Configuration.default_value),
                    lambda v, d: d if v is None else v,
                ),
                Column("default", "Default", (Configuration.default_value,)),
                Column("scopes", "Overridable in", (Configuration.scopes,)),
                Column("description", "Description", (Configuration.description,)),
            ),
            search=(Configuration.name, Configuration.category, Configuration.description),
            default_sort="name",
        ),
    ]
    return {v.name: v for v in views}


VIEWS: dict[str, View] = _views()


def view_named(name: str) -> View:
    """A view by name or alias."""
    wanted = name.strip().lower()
    for view in VIEWS.values():
        if wanted == view.name or wanted in view.aliases:
            return view
    raise NotFound(f"no view '{name}' (views: {', '.join(VIEWS)})", field="view")


# --- queries ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    key: str
    cursor: Cursor
    cells: tuple[str, ...]


@dataclass(frozen=True)
class Page:
    rows: list[Row]
    # More rows exist after the last one (forward) / before the first one.
    more_after: bool
    more_before: bool


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def filter_clause(
    view: View, text: str, *, case_folding_like: bool = True
) -> ColumnElement[bool] | None:
    """The filter as SQL: substring over the search columns; `!text` is its negation.

    SQLite's LIKE already ignores ASCII case (`case_folding_like`); elsewhere ILIKE does.
    Plain LIKE on SQLite keeps the per-row cost low enough to scan 100,000 rows per key.
    """
    text = text.strip()
    inverted = text.startswith("!")
    if inverted:
        text = text[1:].strip()
    if not text:
        return None
    pattern = _like_pattern(text)
    tests = []
    for column in view.search:
        # NULL LIKE x is NULL: coalesce nullable columns so NOT (...) keeps their rows.
        value = func.coalesce(column, "") if _nullable(column) else column
        if case_folding_like:
            tests.append(value.like(pattern, escape="\\"))
        else:
            tests.append(value.ilike(pattern, escape="\\"))
    matches = or_(*tests)
    return not_(matches) if inverted else matches


def _nullable(column: Any) -> bool:
    return bool(getattr(getattr(column, "expression", column), "nullable", True))


def _scoped(session: Any, view: View, scope: dict[str, str] | None) -> list[Any]:
    clauses: list[Any] = list(view.where)
    for kind, ref in (scope or {}).items():
        spec = view.scopes.get(kind)
        if spec is None:
            raise InvalidParameter(
                f"view '{view.name}' cannot be narrowed to a {kind}", field="scope"
            )
        parent = session.execute(
            select(spec.parent_model.id).where(spec.parent_model.uuid == ref)
        ).scalar()
        if parent is None:
            raise NotFound(f"{kind} '{ref}' does not exist", field=kind)
        clauses.append(spec.column == parent)
    return clauses


def _sort_column(view: View, sort: str | None) -> Any:
    column = view.column(sort or view.default_sort)
    if not column.sortable:
        raise InvalidParameter(
            f"view '{view.name}': column '{column.id}' cannot be sorted "
            f"(sortable: {', '.join(view.sortable)})",
            field="sort",
        )
    return column.exprs[0]


def _after(sort_expr: Any, tiebreak: Any, cursor: Cursor, descending: bool, inclusive: bool) -> Any:
    value, tie = cursor
    if sort_expr is tiebreak:  # sorting by the tiebreak itself: one comparison suffices
        if descending:
            return tiebreak <= tie if inclusive else tiebreak < tie
        return tiebreak >= tie if inclusive else tiebreak > tie
    if descending:
        beyond = or_(sort_expr < value, and_(sort_expr == value, tiebreak < tie))
        same = and_(sort_expr == value, tiebreak == tie)
    else:
        beyond = or_(sort_expr > value, and_(sort_expr == value, tiebreak > tie))
        same = and_(sort_expr == value, tiebreak == tie)
    return or_(beyond, same) if inclusive else beyond


def list_page(
    caller: Caller,
    view_name: str,
    *,
    filter_text: str = "",
    sort: str | None = None,
    descending: bool | None = None,
    scope: dict[str, str] | None = None,
    after: Cursor | None = None,
    before: Cursor | None = None,
    inclusive: bool = False,
    from_end: bool = False,
    limit: int = PAGE_SIZE,
) -> Page:
    """One page of `view_name` in (sort, tiebreak) order.

    With `after`, the rows following that cursor (including it when `inclusive`); with
    `before`, the rows preceding it (still returned in display order); with `from_end`,
    the last page. Without any, the first page.
    """
    view = view_named(view_name)
    limit = max(1, min(int(limit), MAX_PAGE))
    desc = view.default_descending if descending is None else descending
    sort_expr = _sort_column(view, sort)
    backwards = before is not None or from_end
    order_desc = desc != backwards  # walking backwards reverses the order
    columns = [view.key, sort_expr, view.tiebreak]
    for column in view.columns:
        columns.extend(column.exprs)
    query = select(*columns).select_from(view.model)
    for target, onclause in view.joins:
        query = query.outerjoin(target, onclause)
    with caller.db.read() as session:
        clauses = _scoped(session, view, scope)
        matched = filter_clause(view, filter_text, case_folding_like=caller.db.is_sqlite)
        if matched is not None:
            clauses.append(matched)
        if after is not None:
            clauses.append(_after(sort_expr, view.tiebreak, after, desc, inclusive))
        elif before is not None:
            clauses.append(_after(sort_expr, view.tiebreak, before, not desc, inclusive))
        if clauses:
            query = query.where(and_(*clauses))
        if order_desc:
            query = query.order_by(sort_expr.desc(), view.tiebreak.desc())
        else:
            query = query.order_by(sort_expr.asc(), view.tiebreak.asc())
        if sort_expr is view.tiebreak:
            query = query.order_by(None).order_by(
                sort_expr.desc() if order_desc else sort_expr.asc()
            )
        fetched = session.execute(query.limit(limit + 1)).all()
    more = len(fetched) > limit
    rows = [_row(view, values) for values in fetched[:limit]]
    if backwards:
        rows.reverse()
        return Page(rows, more_after=before is not None, more_before=more)
    return Page(rows, more_after=more, more_before=after is not None)


def _row(view: View, values: Sequence[Any]) -> Row:
    key, sort_value, tie = values[0], values[1], values[2]
    cells: list[str] = []
    at = 3
    for column in view.columns:
        n = len(column.exprs)
        cells.append(column.show(*values[at : at + n]))
        at += n
    return Row(key=str(key), cursor=(sort_value, tie), cells=tuple(cells))


@dataclass(frozen=True)
class Count:
    rows: int
    capped: bool  # True: at least `rows` match, the count stopped there

    def describe(self) -> str:
        return f"{self.rows:,}+" if self.capped else f"{self.rows:,}"


def count_rows(
    caller: Caller,
    view_name: str,
    *,
    filter_text: str = "",
    scope: dict[str, str] | None = None,
    cap: int = COUNT_CAP,
) -> Count:
    """How many rows match, counting no further than `cap`."""
    view = view_named(view_name)
    inner = select(view.tiebreak).select_from(view.model)
    if view.search_joins and filter_text.strip().lstrip("!").strip():
        for target, onclause in view.joins:
            inner = inner.outerjoin(target, onclause)
    with caller.db.read() as session:
        clauses = _scoped(session, view, scope)
        matched = filter_clause(view, filter_text, case_folding_like=caller.db.is_sqlite)
        if matched is not None:
            clauses.append(matched)
        if clauses:
            inner = inner.where(and_(*clauses))
        limited = inner.limit(cap + 1).subquery()
        total = int(session.execute(select(func.count()).select_from(limited)).scalar() or 0)
    return Count(rows=min(total, cap), capped=total > cap)


def column_labels(view_name: str) -> list[tuple[str, str, bool]]:
    """(id, label, sortable) of each column of the view."""
    return [(c.id, c.label, c.sortable) for c in view_named(view_name).columns]


# --- the topology tree -------------------------------------------------------------------
# The console's tree loads one level at a time: `tree_children(kind, uuid)` returns the
# children of one node, each with its state spelled out and its capacity figures.


@dataclass(frozen=True)
class Measure:
    """One capacity figure of a node: `used` of `total` (None: nothing to measure)."""

    label: str  # "CPU", "Mem", "Stor"
    used: float
    total: float | None
    unit: str  # "mhz", "bytes"


@dataclass(frozen=True)
class TreeItem:
    kind: str  # zone, pod, cluster, host, vm, pools, pool, stores, store, more
    key: str  # uuid; groups and "more" items: "<kind>:<parent uuid>"
    name: str
    state: str
    note: str = ""
    measures: tuple[Measure, ...] = ()
    expandable: bool = False


TREE_LIMIT = 200  # children shown per node; the rest are one "… N more" item


def tree_children(caller: Caller, kind: str, key: str | None = None) -> list[TreeItem]:
    """The children of a tree node: `cloud` (zones), a zone, pod, cluster, host, or the
    `pools` / `stores` group of a cluster / zone (`key` is its parent's uuid)."""
    from engine.capacity import capacity_rollups

    if kind == "cloud":
        return [_container("zone", r) for r in capacity_rollups(caller, "zone")]
    if kind == "zone":
        assert key is not None
        pods = [_container("pod", r) for r in capacity_rollups(caller, "pod", within_ref=key)]
        with caller.db.read() as session:
            zone = _one(session, Zone, key, "zone")
            stores = session.execute(
                select(
                    func.count(),
                    func.sum(ImageStore.used_bytes),
                    func.sum(ImageStore.capacity_bytes),
                ).where(ImageStore.zone_id == zone.id)
            ).one()
        group = TreeItem(
            "stores",
            f"stores:{key}",
            "Secondary storage",
            "",
            note=f"{stores[0]} image store{'' if stores[0] == 1 else 's'}",
            measures=(Measure("Stor", float(stores[1] or 0), float(stores[2] or 0), "bytes"),),
            expandable=bool(stores[0]),
        )
        return [*pods, group]
    if kind == "pod":
        assert key is not None
        return [
            _container("cluster", r) for r in capacity_rollups(caller, "cluster", within_ref=key)
        ]
    with caller.db.read() as session:
        if kind == "cluster":
            return _cluster_children(session, _one(session, Cluster, key, "cluster"))
        if kind == "host":
            return _host_children(session, _one(session, Host, key, "host"))
        if kind == "pools":
            cluster = _one(session, Cluster, key, "cluster")
            pools = session.execute(
                select(StoragePool)
                .where(StoragePool.cluster_id == cluster.id)
                .order_by(StoragePool.name)
            ).scalars()
            return [_pool(p) for p in pools]
        if kind == "stores":
            zone = _one(session, Zone, key, "zone")
            stores = session.execute(
                select(ImageStore).where(ImageStore.zone_id == zone.id).order_by(ImageStore.name)
            ).scalars()
            return [
                TreeItem(
                    "store",
                    s.uuid,
                    s.name,
                    "read-only" if s.read_only else "read-write",
                    note=s.protocol,
                    measures=(
                        Measure("Stor", float(s.used_bytes), float(s.capacity_bytes), "bytes"),
                    ),
                )
                for s in stores
            ]
    raise InvalidParameter(f"the tree has no '{kind}' nodes to open", field="kind")


def _one(session: Any, model: Any, key: str | None, kind: str) -> Any:
    found = session.execute(select(model).where(model.uuid == key)).scalar()
    if found is None:
        raise NotFound(f"{kind} '{key}' does not exist (removed meanwhile?)", field=kind)
    return found


def _container(kind: str, rollup: Any) -> TreeItem:
    down = rollup.hosts - rollup.hosts_up
    state = f"{rollup.hosts:,} host{'' if rollup.hosts == 1 else 's'}"
    state += f", {down} not Up" if down else (", all Up" if rollup.hosts else "")
    return TreeItem(
        kind,
        rollup.uuid,
        rollup.name,
        state,
        measures=(
            Measure("CPU", rollup.cpu_mhz.allocated, rollup.cpu_mhz.total, "mhz"),
            Measure("Mem", rollup.memory_bytes.allocated, rollup.memory_bytes.total, "bytes"),
            Measure(
                "Stor", rollup.primary_used_bytes.used, rollup.primary_used_bytes.total, "bytes"
            ),
        ),
        expandable=True,
    )


def _cluster_children(session: Any, cluster: Cluster) -> list[TreeItem]:
    hosts = (
        session.execute(
            select(Host)
            .where(Host.cluster_id == cluster.id)
            .order_by(Host.name, Host.id)
            .limit(TREE_LIMIT + 1)
        )
        .scalars()
        .all()
    )
    vms = dict(
        session.execute(
            select(VirtualMachine.host_id, func.count())
            .where(
                col_in(VirtualMachine.host_id, [h.id for h in hosts[:TREE_LIMIT]]),
                VirtualMachine.removed.is_(None),  # type: ignore[union-attr]
            )
            .group_by(VirtualMachine.host_id)
        ).all()
    )
    items = [
        TreeItem(
            "host",
            h.uuid,
            h.name,
            f"{h.status}, {h.resource_state}",
            note=f"{vms.get(h.id, 0)} VM{'' if vms.get(h.id, 0) == 1 else 's'}",
            measures=(
                Measure(
                    "CPU",
                    float(h.cpu_used_mhz + h.cpu_reserved_mhz),
                    float(h.cpu_mhz * h.cpu_cores),
                    "mhz",
                ),
                Measure(
                    "Mem",
                    float(h.memory_used_bytes + h.memory_reserved_bytes),
                    float(h.memory_bytes),
                    "bytes",
                ),
            ),
            expandable=bool(vms.get(h.id)),
        )
        for h in hosts[:TREE_LIMIT]
    ]
    if len(hosts) > TREE_LIMIT:
        total = session.execute(select(func.count()).where(Host.cluster_id == cluster.id)).scalar()
        items.append(_more("hosts", cluster.uuid, int(total or 0) - TREE_LIMIT))
    pools = session.execute(
        select(
            func.count(), func.sum(StoragePool.used_bytes), func.sum(StoragePool.capacity_bytes)
        ).where(StoragePool.cluster_id == cluster.id)
    ).one()
    items.append(
        TreeItem(
            "pools",
            f"pools:{cluster.uuid}",
            "Primary storage",
            "",
            note=f"{pools[0]} pool{'' if pools[0] == 1 else 's'}",
            measures=(Measure("Stor", float(pools[1] or 0), float(pools[2] or 0), "bytes"),),
            expandable=bool(pools[0]),
        )
    )
    return items


def _host_children(session: Any, host: Host) -> list[TreeItem]:
    live = (VirtualMachine.host_id == host.id, VirtualMachine.removed.is_(None))  # type: ignore[union-attr]
    vms = (
        session.execute(
            select(VirtualMachine)
            .where(*live)
            .order_by(VirtualMachine.name, VirtualMachine.id)
            .limit(TREE_LIMIT + 1)
        )
        .scalars()
        .all()
    )
    items = [
        TreeItem(
            "vm",
            vm.uuid,
            vm.name,
            f"{vm.state}, {vm.power_state}",
            note=f"{vm.cpu_count} vCPU x {vm.cpu_mhz} MHz, {_gib(vm.memory_bytes)}",
        )
        for vm in vms[:TREE_LIMIT]
    ]
    if len(vms) > TREE_LIMIT:
        total = session.execute(select(func.count()).where(*live)).scalar()
        items.append(_more("vms", host.uuid, int(total or 0) - TREE_LIMIT))
    return items


def _pool(pool: StoragePool) -> TreeItem:
    return TreeItem(
        "pool",
        pool.uuid,
        pool.name,
        pool.status,
        note=f"{pool.pool_type}, allocated {_gib(pool.allocated_bytes)}",
        measures=(Measure("Stor", float(pool.used_bytes), float(pool.capacity_bytes), "bytes"),),
    )


def _more(view: str, parent: str, hidden: int) -> TreeItem:
    return TreeItem(
        "more",
        f"more:{view}:{parent}",
        f"… {hidden:,} more",
        "",
        note=f"open :{view} to see them all",
    )


def col_in(column: Any, values: list[Any]) -> Any:
    return column.in_(values)
