"""Detail screens of a zone, pod, cluster, host or VM.

Each shows the object's facts, its capacity as gauges, what it holds (pods, clusters,
hosts, storage, the first VMs with their count) and, for hosts, live metrics as sparklines
where the host reports them; a VM shows its state, placement, offering, NICs, volumes and
recent events. Data comes from `engine.details` in a thread worker and refreshes live
(`LiveScreen`). Enter on a listed pod, cluster, host or VM opens its own detail screen;
`e` opens the edit form (not in read-only mode), Esc goes back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, OptionList, Static
from textual.widgets.option_list import Option

from engine import details
from engine.capacity import CapacityRollup
from engine.context import Caller
from engine.details import (
    ChildLine,
    ChildList,
    ClusterDetail,
    HostDetail,
    PodDetail,
    VmDetail,
    VmLine,
    VmList,
    ZoneDetail,
)
from tui.screens.dashboard import event_line, replace_options
from tui.screens.host_actions import HOST_BINDINGS, HostActions
from tui.screens.live import Clock, LiveScreen, LiveStatus, hhmmss, is_read_only
from tui.screens.vm_actions import VM_BINDINGS, VmActions
from tui.widgets.crumbs import Breadcrumbs
from tui.widgets.gauge import gauge_line, human_bytes, human_mhz
from tui.widgets.sparkline import History

GOOD_STATES = {"Up", "Enabled", "Running", "PowerOn", "Ready", "Allocated", "Stopped", "PowerOff"}
BAD_STATES = {"Down", "Disconnected", "Alert", "Error", "ErrorInMaintenance", "Unknown"}
Metrics = Callable[[Caller, str], Mapping[str, float] | None]


def state_text(state: str | None) -> Text:
    """A state spelled out, coloured by how worrying it is (the word carries the meaning)."""
    if state is None:
        return Text("-", style="dim")
    if state in BAD_STATES:
        return Text(state, style="bold red")
    if state in GOOD_STATES:
        return Text(state)
    return Text(state, style="bold yellow")


def facts(*rows: tuple[str, Any]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in rows:
        if value is None or value == "":
            shown: RenderableType = Text("-", style="dim")
        elif isinstance(value, Text):
            shown = value
        else:
            shown = Text(str(value))
        table.add_row(key, shown)
    return table


def capacity_group(rollup: CapacityRollup, *, secondary: bool = False) -> Group:
    lines = [
        Text(f"{rollup.hosts} hosts, {rollup.hosts_up} Up · {rollup.cpu_cores.total:,.0f} cores"),
        gauge_line("CPU", rollup.cpu_mhz.allocated, rollup.cpu_mhz.total, unit=human_mhz),
        gauge_line(
            "Memory", rollup.memory_bytes.allocated, rollup.memory_bytes.total, unit=human_bytes
        ),
        gauge_line(
            "Prim used",
            rollup.primary_used_bytes.used,
            rollup.primary_used_bytes.total,
            unit=human_bytes,
        ),
        gauge_line(
            "Prim alloc",
            rollup.primary_allocated_bytes.used,
            rollup.primary_allocated_bytes.total,
            unit=human_bytes,
        ),
    ]
    if secondary:
        lines.append(
            gauge_line(
                "Secondary",
                rollup.secondary_bytes.used,
                rollup.secondary_bytes.total,
                unit=human_bytes,
            )
        )
    return Group(*lines)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _shown_of(total: int, shown: int, noun: str) -> str:
    if total == shown:
        return f"{total} {noun}{'' if total == 1 else 's'}"
    return f"first {shown} of {total} {noun}s"


def child_line(child: ChildLine) -> Text:
    line = Text("  ")
    line.append(f"{child.name:<24}", style="bold")
    line.append(" ")
    line.append_text(state_text(child.state))
    line.append(f"  {child.summary}")
    line.no_wrap, line.overflow = True, "ellipsis"
    return line


def vm_line(vm: VmLine) -> Text:
    line = Text("  ")
    line.append(f"{vm.name:<24}", style="bold")
    line.append(" ")
    line.append_text(state_text(vm.state))
    line.append(" / ")
    line.append_text(state_text(vm.power_state))
    line.append(
        f"  {vm.cpu_count} x {vm.cpu_mhz} MHz · {human_bytes(vm.memory_bytes)}"
        f" · host {vm.host or '-'}"
    )
    line.no_wrap, line.overflow = True, "ellipsis"
    return line


def children_group(children: ChildList, noun: str) -> Group:
    lines = [Text(_shown_of(children.total, len(children.shown), noun), style="dim")]
    return Group(*lines, *(child_line(c) for c in children.shown))


def _count_option(total: int, shown: int, noun: str) -> Option:
    return Option(Text(_shown_of(total, shown, noun), style="dim"), disabled=True)


def child_options(children: ChildList, noun: str, kind: str) -> list[Option]:
    """The count, then one line per child; Enter on a child opens its details."""
    options = [_count_option(children.total, len(children.shown), noun)]
    options += [Option(child_line(c), id=f"{kind}:{c.uuid}") for c in children.shown]
    return options


def vm_options(vms: VmList) -> list[Option]:
    options = [_count_option(vms.total, len(vms.shown), "VM")]
    options += [Option(vm_line(vm), id=f"vm:{vm.uuid}") for vm in vms.shown]
    return options


class Section(Static):
    """A titled panel of a detail screen."""

    DEFAULT_CSS = """
    Section {
        height: auto;
        border: round $secondary;
        border-title-style: bold;
        padding: 0 1;
        margin: 0 1;
    }
    """

    def __init__(self, title: str, *, id: str) -> None:
        super().__init__("", id=id)
        self.border_title = title


class ListSection(OptionList):
    """A titled list of a detail screen whose lines open other detail screens."""

    DEFAULT_CSS = """
    ListSection {
        height: auto;
        max-height: 20;
        border: round $secondary;
        border-title-style: bold;
        padding: 0 1;
        margin: 0 1;
        background: $background;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    ListSection:focus {
        border: round $accent;
    }
    ListSection > .option-list--option-disabled {
        color: $text-muted;
    }
    """

    def __init__(self, title: str, *, id: str) -> None:
        super().__init__(id=id)
        self.border_title = title


# Sections that list objects with detail screens of their own.
LIST_SECTIONS = {"vms", "hosts", "pods", "clusters"}


class DetailScreen(LiveScreen):
    """A detail view: sections filled by `show`, `e` to edit, Esc to go back."""

    KIND = "object"
    EDITABLE = True  # whether `edit_form` returns a form
    SECTIONS: list[tuple[str, str]] = []  # (id, title)
    BINDINGS = [
        Binding("r", "refresh", "Refresh", id="details.refresh"),
        Binding("escape", "back", "Back", id="details.back"),
        Binding("e", "edit", "Edit", id="details.edit"),
    ]

    def __init__(
        self,
        caller: Caller,
        uuid: str,
        *,
        refresh_seconds: float = 2.0,
        clock: Clock | None = None,
        read_only: bool | None = None,
    ) -> None:
        super().__init__(caller, refresh_seconds=refresh_seconds, clock=clock)
        self.uuid = uuid
        self._read_only = read_only
        self.data: Any = None
        self.crumb = f"{self.KIND} …"  # the breadcrumb; named once loaded

    @property
    def read_only(self) -> bool:
        return is_read_only(self.app) if self._read_only is None else self._read_only

    def compose(self) -> ComposeResult:
        yield Header()
        yield Breadcrumbs()
        yield LiveStatus(f"Loading the {self.KIND}…", markup=False)
        with VerticalScroll(id="details-body"):
            for section_id, title in self.SECTIONS:
                if section_id in LIST_SECTIONS:
                    yield ListSection(title, id=section_id)
                else:
                    yield Section(title, id=section_id)
        yield Footer()

    def set_section(self, section_id: str, content: RenderableType) -> None:
        self.query_one(f"#{section_id}", Section).update(content)

    def set_list(self, section_id: str, options: list[Option]) -> None:
        replace_options(self.query_one(f"#{section_id}", ListSection), options)

    @on(OptionList.OptionSelected, "ListSection")
    def _open_child(self, event: OptionList.OptionSelected) -> None:
        kind, _, uuid = (event.option.id or "").partition(":")
        screen = DETAIL_SCREENS.get(kind)
        if screen is not None and uuid:
            self.app.push_screen(
                screen(
                    self.caller,
                    uuid,
                    refresh_seconds=self.refresh_seconds,
                    clock=self.clock,
                    read_only=self._read_only,
                )
            )

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "edit":
            # Read-only mode does not offer edits at all; a VM has no edit form here.
            return not self.read_only and self.EDITABLE
        return True

    async def action_back(self) -> None:
        # The app's "back": StratusApp's keeps its forward history (`]`), Textual's pops.
        await self.app.run_action("back")

    def edit_form(self) -> Screen[Any] | None:
        return None

    def action_edit(self) -> None:
        form = self.edit_form()
        if form is None or self.read_only:
            return
        self.app.push_screen(form, lambda changed: self.load() if changed else None)

    def show(self, data: Any) -> None:
        self.data = data
        self.sub_title = self.crumb = self.title_of(data)
        crumbs = self.query_one(Breadcrumbs)
        crumbs.update(crumbs.path())
        self.fill(data)

    def title_of(self, data: Any) -> str:
        return ""

    def fill(self, data: Any) -> None:
        raise NotImplementedError


class ZoneDetailScreen(DetailScreen):
    TITLE = "Zone"
    KIND = "zone"
    WHAT = "Loading the zone"
    SECTIONS = [
        ("facts", "Zone"),
        ("capacity", "Capacity"),
        ("pods", "Pods"),
        ("storage", "Storage"),
        ("vms", "VMs"),
    ]

    def __init__(self, caller: Caller, zone_uuid: str, **options: Any) -> None:
        super().__init__(caller, zone_uuid, **options)

    def fetch(self) -> ZoneDetail:
        return details.zone_detail(self.caller, self.uuid)

    def title_of(self, data: ZoneDetail) -> str:
        return f"zone {data.zone.name}"

    def edit_form(self) -> Screen[Any] | None:
        from tui.screens.forms import ZoneForm

        return ZoneForm(self.caller, self.uuid, read_only=self._read_only)

    def fill(self, data: ZoneDetail) -> None:
        zone = data.zone
        self.set_section(
            "facts",
            facts(
                ("Name", zone.name),
                ("UUID", zone.uuid),
                ("Description", zone.description),
                ("Network type", zone.network_type),
                ("Allocation", state_text(zone.allocation_state)),
                ("DNS", ", ".join(filter(None, [zone.dns1, zone.dns2]))),
                ("Internal DNS", ", ".join(filter(None, [zone.internal_dns1, zone.internal_dns2]))),
                ("Guest CIDR", zone.guest_cidr),
                ("Network domain", zone.network_domain),
                (
                    "Contains",
                    f"{_plural(data.pods.total, 'pod')} · {_plural(data.clusters, 'cluster')} · "
                    f"{_plural(data.hosts, 'host')} ({data.hosts_up} Up)",
                ),
            ),
        )
        self.set_section("capacity", capacity_group(data.capacity, secondary=True))
        self.set_list("pods", child_options(data.pods, "pod", "pod"))
        self.set_section(
            "storage",
            Group(
                Text("Primary", style="bold"),
                children_group(data.pools, "pool"),
                Text("Secondary", style="bold"),
                children_group(data.image_stores, "image store"),
            ),
        )
        self.set_list("vms", vm_options(data.vms))


class PodDetailScreen(DetailScreen):
    TITLE = "Pod"
    KIND = "pod"
    WHAT = "Loading the pod"
    SECTIONS = [
        ("facts", "Pod"),
        ("capacity", "Capacity"),
        ("clusters", "Clusters"),
        ("vms", "VMs"),
    ]

    def __init__(self, caller: Caller, pod_uuid: str, **options: Any) -> None:
        super().__init__(caller, pod_uuid, **options)

    def fetch(self) -> PodDetail:
        return details.pod_detail(self.caller, self.uuid)

    def title_of(self, data: PodDetail) -> str:
        return f"pod {data.pod.name} in {data.zone_name}"

    def edit_form(self) -> Screen[Any] | None:
        from tui.screens.forms import PodForm

        return PodForm(self.caller, self.uuid, read_only=self._read_only)

    def fill(self, data: PodDetail) -> None:
        pod = data.pod
        self.set_section(
            "facts",
            facts(
                ("Name", pod.name),
                ("UUID", pod.uuid),
                ("Zone", data.zone_name),
                ("Allocation", state_text(pod.allocation_state)),
                ("Network", f"{pod.cidr} (netmask {pod.netmask})"),
                ("Gateway", pod.gateway),
                ("Management range", f"{pod.start_ip} - {pod.end_ip}"),
                (
                    "Contains",
                    f"{_plural(data.clusters.total, 'cluster')} · {_plural(data.hosts, 'host')} "
                    f"({data.hosts_up} Up)",
                ),
            ),
        )
        self.set_section("capacity", capacity_group(data.capacity))
        self.set_list("clusters", child_options(data.clusters, "cluster", "cluster"))
        self.set_list("vms", vm_options(data.vms))


class ClusterDetailScreen(DetailScreen):
    TITLE = "Cluster"
    KIND = "cluster"
    WHAT = "Loading the cluster"
    SECTIONS = [
        ("facts", "Cluster"),
        ("capacity", "Capacity"),
        ("hosts", "Hosts"),
        ("storage", "Primary storage"),
        ("vms", "VMs"),
    ]

    def __init__(self, caller: Caller, cluster_uuid: str, **options: Any) -> None:
        super().__init__(caller, cluster_uuid, **options)

    def fetch(self) -> ClusterDetail:
        return details.cluster_detail(self.caller, self.uuid)

    def title_of(self, data: ClusterDetail) -> str:
        return f"cluster {data.cluster.name} in {data.zone_name} / {data.pod_name}"

    def edit_form(self) -> Screen[Any] | None:
        from tui.screens.forms import ClusterForm

        return ClusterForm(self.caller, self.uuid, read_only=self._read_only)

    def fill(self, data: ClusterDetail) -> None:
        cluster = data.cluster
        rows: list[tuple[str, Any]] = [
            ("Name", cluster.name),
            ("UUID", cluster.uuid),
            ("Zone / pod", f"{data.zone_name} / {data.pod_name}"),
            ("Hypervisor", cluster.hypervisor),
            ("Allocation", state_text(cluster.allocation_state)),
        ]
        for tunable in data.tunables:
            origin = "cluster" if tunable.own else "global"
            rows.append((tunable.label.capitalize(), f"{tunable.value:g} ({origin})"))
        self.set_section("facts", facts(*rows))
        self.set_section("capacity", capacity_group(data.capacity))
        self.set_list("hosts", child_options(data.hosts, "host", "host"))
        self.set_section("storage", children_group(data.pools, "pool"))
        self.set_list("vms", vm_options(data.vms))


class HostDetailScreen(HostActions, DetailScreen):
    TITLE = "Host"
    KIND = "host"
    WHAT = "Loading the host"
    BINDINGS = HOST_BINDINGS
    SECTIONS = [
        ("facts", "Host"),
        ("capacity", "Capacity"),
        ("metrics", "Live metrics"),
        ("vms", "VMs"),
    ]

    def __init__(
        self, caller: Caller, host_uuid: str, *, metrics: Metrics | None = None, **options: Any
    ) -> None:
        super().__init__(caller, host_uuid, **options)
        self.metrics_source: Metrics = metrics or details.live_host_metrics
        self.history = History()
        # The sampler's earlier samples start the sparklines on the first load (a custom
        # metrics source starts from nothing).
        self.past_source: Callable[[Caller, str], list[dict[str, float]]] | None = (
            None if metrics is not None else details.live_host_history
        )

    def host_target(self) -> str | None:
        return self.uuid

    def after_host_change(self, removed: bool = False) -> None:
        if removed:
            self.app.call_later(self.app.run_action, "back")
        else:
            self.load()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        allowed = self.host_action_allowed(action)
        return super().check_action(action, parameters) if allowed is None else allowed

    def fetch(self) -> tuple[HostDetail, Mapping[str, float] | None]:
        detail = details.host_detail(self.caller, self.uuid)
        if self.past_source is not None:
            past, self.past_source = self.past_source(self.caller, self.uuid), None
            for sample in past[:-1]:  # the last one is the current sample, added by fill
                self.history.add(sample)
        return detail, self.metrics_source(self.caller, self.uuid)

    def title_of(self, data: tuple[HostDetail, Any]) -> str:
        detail = data[0]
        return f"host {detail.host.name} in {detail.cluster_name}"

    def edit_form(self) -> Screen[Any] | None:
        from tui.screens.forms import HostForm

        return HostForm(self.caller, self.uuid, read_only=self._read_only)

    def fill(self, data: tuple[HostDetail, Mapping[str, float] | None]) -> None:
        detail, sample = data
        host = detail.host
        self.set_section(
            "facts",
            facts(
                ("Name", host.name),
                ("UUID", host.uuid),
                ("Status", state_text(host.status)),
                ("Resource state", state_text(host.resource_state)),
                (
                    "Zone / pod / cluster",
                    f"{detail.zone_name} / {detail.pod_name} / {detail.cluster_name}",
                ),
                ("URI", host.uri),
                ("Address", host.address),
                ("Hostname", host.hostname),
                (
                    "CPU",
                    f"{host.cpu_model or 'unknown model'} · {host.cpu_sockets} sockets, "
                    f"{host.cpu_cores} cores at {host.cpu_mhz} MHz",
                ),
                ("Memory", human_bytes(host.memory_bytes)),
                (
                    "Hypervisor",
                    " · ".join(
                        filter(
                            None,
                            [
                                host.hypervisor,
                                host.hypervisor_version and f"version {host.hypervisor_version}",
                                host.libvirt_version and f"libvirt {host.libvirt_version}",
                            ],
                        )
                    ),
                ),
                ("Tags", ", ".join(detail.tags)),
                ("Last seen", hhmmss(host.last_seen) + " UTC" if host.last_seen else None),
            ),
        )
        self.set_section(
            "capacity",
            Group(
                gauge_line(
                    "CPU",
                    detail.cpu_mhz.allocated,
                    detail.cpu_mhz.total,
                    unit=human_mhz,
                    note=f"x{detail.cpu_factor:g} overprovisioning",
                ),
                Text(
                    f"{'':11}used {human_mhz(detail.cpu_mhz.used)}, reserved "
                    f"{human_mhz(detail.cpu_mhz.reserved)}",
                    style="dim",
                ),
                gauge_line(
                    "Memory",
                    detail.memory_bytes.allocated,
                    detail.memory_bytes.total,
                    unit=human_bytes,
                    note=f"x{detail.memory_factor:g} overprovisioning",
                ),
                Text(
                    f"{'':11}used {human_bytes(detail.memory_bytes.used)}, reserved "
                    f"{human_bytes(detail.memory_bytes.reserved)}",
                    style="dim",
                ),
            ),
        )
        if sample is not None:
            self.history.add(sample)
        if self.history.series:
            self.set_section("metrics", Group(*self.history.lines()))
        else:
            self.set_section("metrics", Text("no live metrics for this host", style="dim"))
        self.set_list("vms", vm_options(detail.vms))


class VmDetailScreen(VmActions, DetailScreen):
    TITLE = "VM"
    KIND = "VM"
    EDITABLE = False
    WHAT = "Loading the VM"
    BINDINGS = VM_BINDINGS
    SECTIONS = [
        ("facts", "VM"),
        ("nics", "NICs and addresses"),
        ("volumes", "Volumes"),
        ("events", "Recent events"),
    ]

    def __init__(self, caller: Caller, vm_uuid: str, **options: Any) -> None:
        super().__init__(caller, vm_uuid, **options)

    def vm_targets(self) -> list[str]:
        return [self.uuid]

    def after_vm_change(self) -> None:
        self.load()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        allowed = self.vm_action_allowed(action)
        if action == "mark_vm":
            return False
        return super().check_action(action, parameters) if allowed is None else allowed

    def fetch(self) -> VmDetail:
        return details.vm_detail(self.caller, self.uuid)

    def title_of(self, data: VmDetail) -> str:
        return f"VM {data.vm.name}"

    def fill(self, data: VmDetail) -> None:
        vm = data.vm
        power = state_text(vm.power_state)
        if vm.power_state_updated:
            power.append(f" (reported {hhmmss(vm.power_state_updated)} UTC)", style="dim")
        placement = " / ".join(n or "-" for n in (data.zone_name, data.pod_name, data.cluster_name))
        self.set_section(
            "facts",
            facts(
                ("Name", vm.name),
                ("Display name", vm.display_name),
                ("UUID", vm.uuid),
                ("Instance", vm.instance_name),
                ("State", state_text(vm.state)),
                ("Power state", power),
                ("Host", data.host_name),
                ("Last host", data.last_host_name),
                ("Zone / pod / cluster", placement),
                ("Offering", data.offering),
                (
                    "CPU / memory",
                    f"{vm.cpu_count} x {vm.cpu_mhz} MHz · {human_bytes(vm.memory_bytes)}",
                ),
                ("Template", data.template),
                ("ISO", data.iso or "none"),
                ("Account", data.account),
                ("HA", "enabled" if vm.ha_enabled else "off"),
                ("Created", hhmmss(vm.created) + " UTC" if vm.created else None),
            ),
        )
        if data.nics is None:
            self.set_section("nics", Text("n/a: no address information available", style="dim"))
        elif not data.nics:
            self.set_section("nics", Text("no NICs", style="dim"))
        else:
            lines = []
            for nic in data.nics:
                line = Text(f"  nic{nic.device_id}  ", style="bold")
                line.append(f"{nic.network}  {nic.mac_address}  ")
                line.append(", ".join(nic.ip_addresses) or "no address")
                if nic.is_default:
                    line.append("  (default)", style="dim")
                lines.append(line)
            self.set_section("nics", Group(*lines))
        if data.volumes:
            volume_lines = []
            for volume in data.volumes:
                line = Text("  ")
                line.append(f"{volume.name:<24}", style="bold")
                line.append(f" {volume.volume_type:<8} ")
                line.append_text(state_text(volume.state))
                device = "-" if volume.device_id is None else str(volume.device_id)
                pool = volume.pool or "-"
                line.append(f"  {human_bytes(volume.size_bytes)} · device {device} · pool {pool}")
                volume_lines.append(line)
            self.set_section("volumes", Group(*volume_lines))
        else:
            self.set_section("volumes", Text("no volumes", style="dim"))
        if data.events:
            self.set_section("events", Group(*(event_line(e) for e in data.events)))
        else:
            self.set_section("events", Text("no events for this VM", style="dim"))


DETAIL_SCREENS: dict[str, type[DetailScreen]] = {
    "zone": ZoneDetailScreen,
    "pod": PodDetailScreen,
    "cluster": ClusterDetailScreen,
    "host": HostDetailScreen,
    "vm": VmDetailScreen,
}
