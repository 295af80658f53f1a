"""`:secgroups`: security groups and their rules, with rules added and removed in place.

Each group is a heading (account, name, VMs in it) followed by its rules. `a` adds a rule
to the group under the cursor (a form whose every check is the engine's: a reversed port
range, a bad CIDR, ports on an icmp rule … come back next to the field at fault), `x`
removes the rule under the cursor after a confirmation, `n` creates a group. Data comes
from `engine.security_group_views` in a thread worker and refreshes live. Read-only mode
has none of the changing keys.
"""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.text import Text
from textual.binding import Binding
from textual.widgets.option_list import Option

from engine.context import Caller
from engine.ipam import security_groups
from engine.security_group_views import GroupView, RuleView, security_groups_overview
from tui.screens.forms import FormField, FormScreen
from tui.screens.group_lists import GroupListScreen
from tui.screens.live import is_read_only
from tui.widgets.confirm import Confirmation, ConfirmDialog

SG_ACTIONS = {"add_rule", "remove_rule", "new_group"}


def _opt(text: str) -> str | None:
    return text.strip() or None


class RuleForm(FormScreen):
    """Add a rule to one group; the values go to the engine as typed."""

    NOUN = "security group rule"
    FIELDS = [
        FormField("direction", "Direction", choices=("ingress", "egress")),
        FormField("protocol", "Protocol", choices=("tcp", "udp", "icmp", "all")),
        FormField("start_port", "Start port", "tcp/udp: 22"),
        FormField("end_port", "End port", "empty: the start port"),
        FormField("icmp_type", "ICMP type", "icmp: -1 = any"),
        FormField("icmp_code", "ICMP code", "icmp: -1 = any"),
        FormField("cidr", "CIDR", "0.0.0.0/0 (or give a group)"),
        FormField("remote_group", "Or from group", "another group's name or UUID"),
    ]

    def __init__(self, caller: Caller, group: GroupView, **options: Any) -> None:
        super().__init__(caller, None, **options)
        self.group = group

    def title_text(self) -> str:
        return f"Add a rule to security group {self.group.name} (account {self.group.account})"

    def submit(self, values: dict[str, str]) -> str:
        rule = security_groups.add_security_group_rule(
            self.caller,
            self.group.uuid,
            direction=values["direction"],
            protocol=values["protocol"],
            start_port=_opt(values["start_port"]),  # type: ignore[arg-type]  # engine checks
            end_port=_opt(values["end_port"]),  # type: ignore[arg-type]
            icmp_type=_opt(values["icmp_type"]),  # type: ignore[arg-type]
            icmp_code=_opt(values["icmp_code"]),  # type: ignore[arg-type]
            cidr=_opt(values["cidr"]),
            remote_group_ref=_opt(values["remote_group"]),
        )
        return rule.uuid


class GroupForm(FormScreen):
    NOUN = "security group"
    FIELDS = [
        FormField("name", "Name", "web"),
        FormField("account", "Account", "empty: your own account"),
        FormField("description", "Description", "optional"),
    ]

    def submit(self, values: dict[str, str]) -> str:
        group = security_groups.create_security_group(
            self.caller,
            values["name"].strip(),
            account_ref=_opt(values["account"]),
            description=values["description"].strip(),
        )
        return group.uuid


def group_text(group: GroupView) -> Text:
    line = Text(f"{group.account} / ", style="dim")
    line.append(group.name, style="bold")
    if group.is_default:
        line.append(" (default)", style="dim")
    line.append(f"  {group.vms} VM{'s' if group.vms != 1 else ''} · ")
    line.append(f"{len(group.rules)} rule{'s' if len(group.rules) != 1 else ''}")
    if not any(rule.direction == "ingress" for rule in group.rules):
        line.append(" · ingress denied", style="dim")
    return line


def overview_options(groups: list[GroupView]) -> list[Option]:
    if not groups:
        return [Option(Text("no security groups yet: n creates one", style="dim"), disabled=True)]
    options = []
    for group in groups:
        options.append(Option(group_text(group), id=f"group:{group.uuid}"))
        options += [
            Option(Text(f"    {rule.text}"), id=f"rule:{rule.uuid}:{group.uuid}")
            for rule in group.rules
        ]
    return options


class SecurityGroupsScreen(GroupListScreen):
    TITLE = "Security groups"
    WHAT = "Security groups refresh"
    BINDINGS = [
        Binding("r", "refresh", "Refresh", id="sg.refresh"),
        Binding("a", "add_rule", "Add rule", id="sg.add_rule"),
        Binding("x", "remove_rule", "Remove rule", id="sg.remove_rule"),
        Binding("n", "new_group", "New group", id="sg.new_group"),
        Binding("escape", "back", "Back", id="sg.back"),
    ]
    LIST_ID = "sg-list"
    LIST_TITLE = "Security groups and rules"
    LOADING = "Loading the security groups…"

    def fetch(self) -> list[GroupView]:
        return security_groups_overview(self.caller)

    def status_text(self, data: list[GroupView]) -> str:
        rules = sum(len(g.rules) for g in data)
        return f"{len(data)} groups · {rules} rules"

    def options(self, data: list[GroupView]) -> list[Option]:
        return overview_options(data)

    def selected(self) -> tuple[GroupView | None, RuleView | None]:
        option = self.group_list.highlighted_option
        if option is None or option.id is None:
            return None, None
        kind, _, rest = option.id.partition(":")
        rule_uuid, _, group_uuid = rest.partition(":") if kind == "rule" else ("", "", rest)
        group = next((g for g in self.groups if g.uuid == group_uuid), None)
        rule = None
        if group is not None and rule_uuid:
            rule = next((r for r in group.rules if r.uuid == rule_uuid), None)
        return group, rule

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action not in SG_ACTIONS:
            return True
        if is_read_only(self.app):
            return False
        group, rule = self.selected()
        if action == "add_rule":
            return None if group is None else True
        if action == "remove_rule":
            return None if rule is None else True
        return True

    def _after(self, changed: str | None) -> None:
        if changed:
            self.load()

    def action_add_rule(self) -> None:
        group, _rule = self.selected()
        if group is not None and not is_read_only(self.app):
            self.app.push_screen(RuleForm(self.caller, group), self._after)

    def action_new_group(self) -> None:
        if not is_read_only(self.app):
            self.app.push_screen(GroupForm(self.caller), self._after)

    def action_remove_rule(self) -> None:
        group, rule = self.selected()
        if group is None or rule is None or is_read_only(self.app):
            return
        confirmation = Confirmation(
            title=f"Remove a rule of security group {group.name}?",
            action="Remove rule",
            affected=[
                f"rule: {rule.text}",
                f"security group {group.name} of account {group.account}, "
                f"{group.vms} VM{'s' if group.vms != 1 else ''} in it",
            ],
        )
        self.app.push_screen(
            ConfirmDialog(confirmation), lambda yes: self._remove(rule) if yes else None
        )

    def _remove(self, rule: RuleView) -> None:
        caller = self.caller

        def done(_none: Any) -> None:
            self.notify(escape(f"removed {rule.text}"), title="Security group")
            self.load()

        self.run_then(
            lambda: security_groups.revoke_security_group_rule(caller, rule.uuid),
            done,
            what="Removing the rule",
        )
