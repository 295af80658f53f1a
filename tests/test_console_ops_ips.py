"""IP actions from the console: a public IP associated and released (with confirmation),
security-group rules added and removed, bad input refused with the engine's message in
place, and none of it in read-only mode."""

from __future__ import annotations

from console_support import build, build_ipam, go, run_console, settle, toasts
from ops_support import affected, wait_for
from sqlmodel import select
from textual.pilot import Pilot
from textual.widgets import Input, OptionList, Select, Static

from engine.bootstrap import Cloud
from engine.models import PublicIpAddress, SecurityGroupRule
from tui.app import StratusApp
from tui.screens.forms import FormScreen
from tui.screens.ip_actions import AssociateIpForm, IpsScreen
from tui.screens.security_groups import GroupForm, RuleForm, SecurityGroupsScreen
from tui.widgets.confirm import ConfirmDialog


def world(cloud: Cloud) -> None:
    build(cloud.admin, hosts=1, vms=0)
    build_ipam(cloud.admin)


def addresses(cloud: Cloud) -> dict[str, str]:
    """Every public address that is not Free, with its state."""
    with cloud.db.read() as session:
        rows = session.exec(select(PublicIpAddress).where(PublicIpAddress.state != "Free"))
        return {row.address: row.state for row in rows}


def rules(cloud: Cloud) -> list[tuple[str, int | None, int | None, str | None]]:
    with cloud.db.read() as session:
        return [
            (r.protocol, r.start_port, r.end_port, r.cidr)
            for r in session.exec(select(SecurityGroupRule).order_by(SecurityGroupRule.id))
        ]


async def save_form(app: StratusApp, pilot: Pilot) -> None:
    await pilot.press("ctrl+s")
    await settle(app, pilot)


def field_error(app: StratusApp, name: str) -> str:
    return str(app.screen.query_one(f"#error-{name}", Static).render())


def test_associate_then_release_a_public_ip(cloud: Cloud) -> None:
    world(cloud)
    before = addresses(cloud)  # blue's source NAT and its second address

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await go(app, pilot, "ips")
        assert isinstance(app.screen, IpsScreen)
        await pilot.press("a")
        await settle(app, pilot)
        form = app.screen
        assert isinstance(form, AssociateIpForm)
        form.query_one("#input-zone", Input).value = "z1"
        form.query_one("#input-address", Input).value = "192.0.2.99"  # in no range
        await save_form(app, pilot)
        assert isinstance(app.screen, AssociateIpForm)  # refused, kept open
        assert "192.0.2.99" in field_error(app, "address")
        assert addresses(cloud) == before
        form.query_one("#input-address", Input).value = ""
        await save_form(app, pilot)
        assert isinstance(app.screen, IpsScreen)
        (new,) = set(addresses(cloud)) - set(before)
        assert addresses(cloud)[new] == "Allocated"
        assert any(f"associated {new}" in t for t in toasts(app))
        screen = app.screen
        while screen.cursor_row.cells[0] != new:
            await pilot.press("down")
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the dialog")
        listed = affected(app)
        assert f"public address {new} (Allocated) in zone z1" in listed
        assert "held by account admin" in listed
        await pilot.press("enter")  # Cancel has the focus: nothing released
        await settle(app, pilot)
        assert addresses(cloud)[new] == "Allocated"
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the dialog")
        await pilot.click("#confirm")
        await wait_for(pilot, lambda: new not in addresses(cloud), "the release")
        await settle(app, pilot)
        assert any(f"released {new}" in t for t in toasts(app))
        shown = {screen.cell_at(i, "address"): screen.cell_at(i, "state")
                 for i in range(screen.table.row_count)}  # fmt: skip
        assert shown[new] == "Free"

    run_console(cloud, scenario)
    assert addresses(cloud) == before


def test_security_group_rule_added_a_bad_one_refused_and_one_removed(cloud: Cloud) -> None:
    world(cloud)

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await go(app, pilot, "secgroups")
        screen = app.screen
        assert isinstance(screen, SecurityGroupsScreen)
        assert screen.check_action("add_rule", ()) is None  # no group under the cursor
        await pilot.press("n")
        await settle(app, pilot)
        assert isinstance(app.screen, GroupForm)
        app.screen.query_one("#input-name", Input).value = "web"
        await save_form(app, pilot)
        assert isinstance(app.screen, SecurityGroupsScreen)
        options = screen.query_one("#sg-list", OptionList)
        texts = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
        assert any("admin / web" in t and "0 rules" in t for t in texts)
        options.highlighted = next(i for i, t in enumerate(texts) if "admin / web" in t)
        await pilot.press("a")
        await settle(app, pilot)
        form = app.screen
        assert isinstance(form, RuleForm)
        form.query_one("#input-protocol", Select).value = "tcp"
        form.query_one("#input-start_port", Input).value = "8080"
        form.query_one("#input-end_port", Input).value = "80"
        form.query_one("#input-cidr", Input).value = "0.0.0.0/0"
        await save_form(app, pilot)
        assert isinstance(app.screen, RuleForm)  # refused; what was typed stays
        assert field_error(app, "end_port") == (
            "security group 'web': port range 8080-80 is reversed"
        )
        assert form.query_one("#input-start_port", Input).value == "8080"
        assert rules(cloud) == []
        form.query_one("#input-end_port", Input).value = "8443"
        await save_form(app, pilot)
        assert isinstance(app.screen, SecurityGroupsScreen)
        assert rules(cloud) == [("tcp", 8080, 8443, "0.0.0.0/0")]
        await settle(app, pilot)
        texts = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
        rule_line = "ingress tcp ports 8080-8443 from 0.0.0.0/0"
        assert any(rule_line in t for t in texts)
        options.highlighted = next(i for i, t in enumerate(texts) if rule_line in t)
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the dialog")
        assert f"rule: {rule_line}" in affected(app)
        await pilot.click("#confirm")
        await wait_for(pilot, lambda: rules(cloud) == [], "the rule removed")

    run_console(cloud, scenario)


def test_read_only_hides_ip_and_security_group_actions(cloud: Cloud) -> None:
    world(cloud)
    before = (addresses(cloud), rules(cloud))

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await go(app, pilot, "ips")
        active = {b.binding.id for b in app.active_bindings.values()}
        assert not active & {"ip.associate", "ip.release"}
        await pilot.press("a", "x")
        await settle(app, pilot)
        assert isinstance(app.screen, IpsScreen)
        await go(app, pilot, "secgroups")
        active = {b.binding.id for b in app.active_bindings.values()}
        assert not active & {"sg.add_rule", "sg.remove_rule", "sg.new_group"}
        await pilot.press("n", "a", "x")
        await settle(app, pilot)
        assert not isinstance(app.screen, FormScreen | ConfirmDialog)

    run_console(cloud, scenario, read_only=True)
    assert (addresses(cloud), rules(cloud)) == before


def test_public_ranges_show_their_use_and_enter_lists_the_range_addresses(cloud: Cloud) -> None:
    world(cloud)

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await go(app, pilot, "ranges")
        row = app.screen.cursor_row
        assert row.cells[0] == "198.51.100.10-198.51.100.40"
        assert row.cells[6] == "2 / 31 (6%)"  # blue's source NAT and its second address
        await pilot.press("enter")
        await settle(app, pilot)
        assert isinstance(app.screen, IpsScreen)  # associate and release from here
        assert app.screen.scope == {"range": row.key}
        assert app.screen.cursor_row.cells[0] == "198.51.100.10"
        await go(app, pilot, "mgmt")
        assert app.screen.cursor_row.cells[:5] == (
            "p1",
            "z1",
            "10.1.0.1 (10.1.0.0/24)",
            "10.1.0.10-10.1.0.99",
            "1 / 90 (1%)",  # the one host's address
        )

    run_console(cloud, scenario)
