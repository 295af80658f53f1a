"""Public IP actions on the `:ips` table: associate an address with an account, release one.

`a` opens a form (zone, account, optional network and address) that calls
`ipam.public.associate_public_ip`; its refusals (no free address, an unknown account, an
address already taken) show next to the field at fault. `x` releases the address under
the cursor after a confirmation that says who holds it. Neither key exists in read-only
mode.
"""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from textual.binding import Binding

from engine import topology
from engine.context import Caller
from engine.ipam import public
from tui.screens.forms import FormField, FormScreen
from tui.screens.jobs import JobWatching
from tui.screens.live import is_read_only
from tui.screens.resources import ResourceScreen
from tui.widgets.confirm import Confirmation, ConfirmDialog

IP_ACTIONS = {"associate_ip", "release_ip"}


def _opt(text: str) -> str | None:
    return text.strip() or None


class AssociateIpForm(FormScreen):
    """Give an account a public address: the next free one, or the one asked for."""

    NOUN = "public IP address"
    FIELDS = [
        FormField("zone", "Zone", "zone name or UUID"),
        FormField("account", "Account", "empty: your own account", aliases=("domain",)),
        FormField("network", "Guest network", "optional: an isolated network (source NAT)"),
        FormField("address", "Address", "optional: empty takes the next free address"),
    ]

    def __init__(self, caller: Caller, *, zone_uuid: str | None = None, **options: Any) -> None:
        super().__init__(caller, None, **options)
        self.zone_uuid = zone_uuid
        self.associated = ""  # the address given, once saved

    def title_text(self) -> str:
        return "Associate a public IP address with an account"

    def initial_values(self) -> dict[str, str]:
        if self.zone_uuid is None:
            return {}
        zone = topology.get_zone(self.caller, self.zone_uuid)
        self.references["zone"] = (zone.name, zone.uuid)
        return {"zone": zone.name}

    def submit(self, values: dict[str, str]) -> str:
        row = public.associate_public_ip(
            self.caller,
            self.reference("zone", values) or "",
            account_ref=_opt(values["account"]),
            network_ref=_opt(values["network"]),
            address=_opt(values["address"]),
        )
        self.associated = row.address
        return row.uuid


class IpsScreen(JobWatching, ResourceScreen):
    """The public addresses table, with associate (`a`) and release (`x`)."""

    BINDINGS = [
        Binding("a", "associate_ip", "Associate", id="ip.associate"),
        Binding("x", "release_ip", "Release", id="ip.release"),
    ]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in IP_ACTIONS:
            if is_read_only(self.app):
                return False
            return action == "associate_ip" or self.cursor_row is not None
        return super().check_action(action, parameters)

    def action_associate_ip(self) -> None:
        if is_read_only(self.app):
            return
        form = AssociateIpForm(self.caller, zone_uuid=self.scope.get("zone"))

        def done(uuid: str | None) -> None:
            if uuid:
                self.notify(escape(f"associated {form.associated}"), title="Public IP")
                self.load(mode="refresh")

        self.app.push_screen(form, done)

    def action_release_ip(self) -> None:
        row = self.cursor_row
        if row is None or is_read_only(self.app):
            return
        cells = {column.id: cell for column, cell in zip(self.view.columns, row.cells, strict=True)}
        holder = f"account {cells['account']}" if cells.get("account") else "no account"
        affected = [
            f"public address {cells['address']} ({cells['state']}) in zone {cells['zone']}",
            f"held by {holder}; it goes back to its range ({cells['range']})",
        ]
        if cells.get("snat"):
            affected.append("it is a network's source NAT address: the network loses it")
        confirmation = Confirmation(
            title=f"Release {cells['address']}?", action="Release", affected=affected
        )
        self.app.push_screen(
            ConfirmDialog(confirmation),
            lambda yes: self._release(row.key, cells["address"]) if yes else None,
        )

    def _release(self, uuid: str, address: str) -> None:
        caller = self.caller

        def done(_row: Any) -> None:
            self.notify(escape(f"released {address}"), title="Public IP")
            self.load(mode="refresh")

        self.run_then(
            lambda: public.release_public_ip(caller, uuid), done, what=f"Releasing {address}"
        )
