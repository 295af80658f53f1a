"""`:affinity`: affinity groups (host anti-affinity / host affinity / explicit dedication)
with the VMs in them and the hosts they run on.

Each group is a heading (account, name, type, VMs on how many hosts) followed by its VMs.
`n` creates a group (a form whose checks are the engine's: a taken name for the account
or a bad type come back next to the field), `ctrl+d` deletes the group under the cursor
after a confirmation listing it — the engine refuses while VMs are still in it, and the
refusal names them. The deploy wizard puts new VMs into groups. Read-only mode has none
of the changing keys.
"""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.text import Text
from textual.binding import Binding
from textual.widgets.option_list import Option

from engine.affinity import AffinityGroupView, affinity_groups_overview
from engine.models import AffinityGroupType
from engine.placement import groups as affinity_groups
from tui.screens.forms import FormField, FormScreen
from tui.screens.group_lists import GroupListScreen
from tui.screens.live import is_read_only
from tui.widgets.confirm import Confirmation, ConfirmDialog

AG_ACTIONS = {"new_group", "delete_group"}


class AffinityGroupForm(FormScreen):
    NOUN = "affinity group"
    FIELDS = [
        FormField("name", "Name", "web-spread"),
        FormField("group_type", "Type", choices=tuple(t.value for t in AffinityGroupType)),
        FormField("account", "Account", "empty: your own account"),
        FormField("description", "Description", "optional"),
    ]

    def submit(self, values: dict[str, str]) -> str:
        group = affinity_groups.create_affinity_group(
            self.caller,
            values["name"].strip(),
            values["group_type"],
            account=values["account"].strip() or None,
            description=values["description"].strip(),
        )
        return group.uuid


def group_text(group: AffinityGroupView) -> Text:
    line = Text(f"{group.account} / ", style="dim")
    line.append(group.name, style="bold")
    line.append(f"  {group.group_type} · {group.vms} VM{'s' if group.vms != 1 else ''}")
    if group.vms:
        line.append(f" on {group.hosts} host{'s' if group.hosts != 1 else ''}")
    return line


def overview_options(groups: list[AffinityGroupView]) -> list[Option]:
    if not groups:
        return [Option(Text("no affinity groups yet: n creates one", style="dim"), disabled=True)]
    options = []
    for group in groups:
        options.append(Option(group_text(group), id=f"group:{group.uuid}"))
        options += [
            Option(
                Text(f"    {m.name} ({m.state}{f' on {m.host}' if m.host else ''})"),
                id=f"vm:{i}:{group.uuid}",
            )
            for i, m in enumerate(group.members)
        ]
    return options


class AffinityScreen(GroupListScreen):
    TITLE = "Affinity groups"
    WHAT = "Affinity groups refresh"
    BINDINGS = [
        Binding("r", "refresh", "Refresh", id="ag.refresh"),
        Binding("n", "new_group", "New group", id="ag.new_group"),
        Binding("ctrl+d", "delete_group", "Delete group", id="ag.delete_group"),
        Binding("escape", "back", "Back", id="ag.back"),
    ]
    LIST_ID = "ag-list"
    LIST_TITLE = "Affinity groups and their VMs"
    LOADING = "Loading the affinity groups…"

    def fetch(self) -> list[AffinityGroupView]:
        return affinity_groups_overview(self.caller)

    def status_text(self, data: list[AffinityGroupView]) -> str:
        return f"{len(data)} groups · {sum(g.vms for g in data)} VMs in them"

    def options(self, data: list[AffinityGroupView]) -> list[Option]:
        return overview_options(data)

    def selected(self) -> AffinityGroupView | None:
        option = self.group_list.highlighted_option
        if option is None or option.id is None:
            return None
        group_uuid = option.id.rpartition(":")[2]
        return next((g for g in self.groups if g.uuid == group_uuid), None)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action not in AG_ACTIONS:
            return True
        if is_read_only(self.app):
            return False
        if action == "delete_group":
            return None if self.selected() is None else True
        return True

    def _after(self, changed: str | None) -> None:
        if changed:
            self.load()

    def action_new_group(self) -> None:
        if not is_read_only(self.app):
            self.app.push_screen(AffinityGroupForm(self.caller), self._after)

    def action_delete_group(self) -> None:
        group = self.selected()
        if group is None or is_read_only(self.app):
            return
        affected = [
            f"affinity group {group.name} ({group.group_type}) of account {group.account}",
        ]
        affected += [
            f"VM {m.name} ({m.state}) is in it: the delete is refused until it leaves"
            for m in group.members
        ]
        confirmation = Confirmation(
            title=f"Delete affinity group {group.name}?",
            action="Delete",
            affected=affected,
        )
        self.app.push_screen(
            ConfirmDialog(confirmation), lambda yes: self._delete(group) if yes else None
        )

    def _delete(self, group: AffinityGroupView) -> None:
        caller = self.caller

        def done(_none: Any) -> None:
            self.notify(escape(f"deleted affinity group {group.name}"), title="Affinity")
            self.load()

        self.run_then(
            lambda: affinity_groups.delete_affinity_group(caller, group.uuid),
            done,
            what="Deleting the group",
        )
