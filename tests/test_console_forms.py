"""Forms: the engine's message beside the input at fault, typed text kept, objects created."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from helpers import db_snapshot
from screens_support import (
    CLUSTER,
    HOST_UP,
    POD,
    ZONE,
    ScreenApp,
    build_world,
    frozen_clock,
    screen_text,
    settle,
    toasts,
)
from sqlmodel import select
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import Input, Static

from engine import settings, topology
from engine.bootstrap import Cloud
from engine.models import Event, ImageStore, StoragePool
from tui.screens.details import ZoneDetailScreen
from tui.screens.forms import (
    FORMS,
    ClusterForm,
    FormScreen,
    HostForm,
    PodForm,
    PrimaryStorageForm,
    SecondaryStorageForm,
    SettingForm,
    ZoneForm,
)

GIB = 2**30


def run_form(
    make: Callable[[], Screen[Any]],
    scenario: Callable[[ScreenApp, Pilot[Any]], Awaitable[None]],
    *,
    read_only: bool = False,
) -> ScreenApp:
    app = ScreenApp(make, read_only=read_only)

    async def main() -> None:
        async with app.run_test(size=(120, 40), notifications=True) as pilot:
            await settle(app, pilot)
            await scenario(app, pilot)

    asyncio.run(main())
    return app


async def type_into(pilot: Pilot[Any], name: str, text: str) -> None:
    """Focus an input, clear it and type `text` key by key, as an operator would."""
    widget = pilot.app.screen.query_one(f"#input-{name}", Input)
    widget.focus()
    widget.value = ""
    await pilot.press(*text)


async def save(app: ScreenApp, pilot: Pilot[Any]) -> None:
    await pilot.press("ctrl+s")
    await settle(app, pilot)


def error_beside(app: ScreenApp, name: str) -> str:
    shown = app.screen.query_one(f"#error-{name}", Static)
    return str(shown.render()) if shown.has_class("-shown") else ""


def shown_errors(app: ScreenApp) -> dict[str, str]:
    found = {}
    for error in app.screen.query(".field-error.-shown"):
        found[str(error.id).removeprefix("error-")] = str(error.render())
    return found


def value(app: ScreenApp, name: str) -> str:
    return app.screen.query_one(f"#input-{name}", Input).value


# --- bad input ------------------------------------------------------------------------


def test_zone_form_shows_the_engine_message_beside_dns1_and_keeps_the_text(cloud: Cloud) -> None:
    before = db_snapshot(cloud)

    async def scenario(app: ScreenApp, pilot: Pilot[Any]) -> None:
        await type_into(pilot, "name", "eu-north")
        await type_into(pilot, "dns1", "not-an-ip")
        await type_into(pilot, "description", "Stockholm")
        await save(app, pilot)
        assert isinstance(app.screen, ZoneForm)  # still open
        assert shown_errors(app) == {
            "dns1": "zone 'eu-north': DNS 1 'not-an-ip' is not a valid IP address"
        }
        assert app.screen.focused is app.screen.query_one("#input-dns1")
        assert (value(app, "name"), value(app, "dns1"), value(app, "description")) == (
            "eu-north",
            "not-an-ip",
            "Stockholm",
        )
        assert db_snapshot(cloud) == before  # nothing written

        # Fixed: the form saves and dismisses with the new zone's UUID.
        await type_into(pilot, "dns1", "192.0.2.1")
        await save(app, pilot)
        assert not isinstance(app.screen, ZoneForm)
        (uuid,) = app.dismissed
        zone = topology.get_zone(cloud.admin, uuid)
        assert (zone.name, zone.dns1, zone.description) == ("eu-north", "192.0.2.1", "Stockholm")

    run_form(lambda: ZoneForm(cloud.admin), scenario)


def test_a_second_error_moves_to_its_own_field(cloud: Cloud) -> None:
    async def scenario(app: ScreenApp, pilot: Pilot[Any]) -> None:
        await type_into(pilot, "name", "eu-north")
        await type_into(pilot, "dns1", "x")
        await save(app, pilot)
        assert list(shown_errors(app)) == ["dns1"]
        await type_into(pilot, "dns1", "192.0.2.1")
        await type_into(pilot, "guest_cidr", "8.8.0.0/16")
        await save(app, pilot)
        assert shown_errors(app) == {
            "guest_cidr": "zone 'eu-north': guest CIDR 8.8.0.0/16 is not a private (RFC 1918) "
            "network"
        }
        assert value(app, "guest_cidr") == "8.8.0.0/16"

    run_form(lambda: ZoneForm(cloud.admin), scenario)


def test_pod_form_prefills_its_zone_and_puts_range_errors_beside_the_range(cloud: Cloud) -> None:
    build_world(cloud)

    async def scenario(app: ScreenApp, pilot: Pilot[Any]) -> None:
        assert value(app, "zone") == "eu-west"
        await type_into(pilot, "name", "rack-2")
        await type_into(pilot, "gateway", "10.2.0.1")
        await type_into(pilot, "netmask", "24")
        await type_into(pilot, "start_ip", "10.9.0.10")
        await type_into(pilot, "end_ip", "10.9.0.50")
        await save(app, pilot)
        assert error_beside(app, "start_ip") == (
            "pod 'rack-2': management range 10.9.0.10-10.9.0.50 is outside the pod network "
            "10.2.0.0/24"
        )
        assert (value(app, "start_ip"), value(app, "end_ip")) == ("10.9.0.10", "10.9.0.50")

        await type_into(pilot, "start_ip", "10.2.0.10")
        await type_into(pilot, "end_ip", "10.2.0.50")
        await save(app, pilot)
        (uuid,) = app.dismissed
        pod = topology.get_pod(cloud.admin, uuid)
        assert (pod.name, pod.cidr, pod.start_ip, pod.end_ip) == (
            "rack-2",
            "10.2.0.0/24",
            "10.2.0.10",
            "10.2.0.50",
        )
        assert topology.get_zone(cloud.admin, ZONE).id == pod.zone_id

    run_form(lambda: PodForm(cloud.admin, zone_uuid=ZONE), scenario)


def test_cluster_form_factor_error_and_creation(cloud: Cloud) -> None:
    build_world(cloud)

    async def scenario(app: ScreenApp, pilot: Pilot[Any]) -> None:
        assert value(app, "pod") == "rack-1"
        await type_into(pilot, "name", "kvm-b")
        await type_into(pilot, "cpu_overprovisioning_factor", "0.5")
        await save(app, pilot)
        assert error_beside(app, "cpu_overprovisioning_factor") == (
            "cluster 'kvm-b': CPU overprovisioning factor must be at least 1.0, got 0.5"
        )
        await type_into(pilot, "cpu_overprovisioning_factor", "3")
        await save(app, pilot)
        (uuid,) = app.dismissed
        cluster = topology.get_cluster(cloud.admin, uuid)
        assert (cluster.name, cluster.cpu_overprovisioning_factor) == ("kvm-b", 3.0)
        assert cluster.mem_overprovisioning_factor is None  # empty input inherits

    run_form(lambda: ClusterForm(cloud.admin, pod_uuid=POD), scenario)


def test_host_form_errors_for_uri_and_memory_then_adds_the_host(cloud: Cloud) -> None:
    build_world(cloud)

    async def scenario(app: ScreenApp, pilot: Pilot[Any]) -> None:
        assert value(app, "cluster") == "kvm-a" and value(app, "cpu_sockets") == "1"
        await type_into(pilot, "name", "a3")
        await type_into(pilot, "uri", "http://a3")
        await type_into(pilot, "cpu_cores", "8")
        await type_into(pilot, "cpu_mhz", "2400")
        await type_into(pilot, "memory_bytes", "lots")
        await save(app, pilot)
        assert error_beside(app, "memory_bytes") == "memory (gib): 'lots' is not a number of GiB"
        await type_into(pilot, "memory_bytes", "32")
        await save(app, pilot)
        assert list(shown_errors(app)) == ["uri"]
        assert "http://a3" in error_beside(app, "uri")
        await type_into(pilot, "uri", "qemu+ssh://root@10.1.0.13/system")
        await type_into(pilot, "cpu_cores", "many")
        await save(app, pilot)
        assert error_beside(app, "cpu_cores") == "host 'a3': CPU cores 'many' is not a whole number"
        await type_into(pilot, "cpu_cores", "8")
        await type_into(pilot, "tags", "gpu, ssd")
        await save(app, pilot)
        (uuid,) = app.dismissed
        host = topology.get_host(cloud.admin, uuid)
        assert (host.name, host.cpu_cores, host.cpu_mhz, host.memory_bytes) == (
            "a3",
            8,
            2400,
            32 * GIB,
        )
        assert topology.host_tags(cloud.admin, uuid) == ["gpu", "ssd"]

    run_form(lambda: HostForm(cloud.admin, cluster_uuid=CLUSTER), scenario)


def test_primary_storage_form_path_error_and_creation(cloud: Cloud) -> None:
    build_world(cloud)

    async def scenario(app: ScreenApp, pilot: Pilot[Any]) -> None:
        assert (value(app, "zone"), value(app, "cluster")) == ("eu-west", "kvm-a")
        await type_into(pilot, "name", "ps-2")
        await type_into(pilot, "path", "srv/relative")
        await type_into(pilot, "capacity_bytes", "512")
        await save(app, pilot)
        assert error_beside(app, "path") == (
            "primary storage 'ps-2': path 'srv/relative' must be absolute"
        )
        await type_into(pilot, "path", "/srv/primary/ps-2")
        await save(app, pilot)
        (uuid,) = app.dismissed
        with cloud.db.read() as session:
            pool = session.exec(select(StoragePool).where(StoragePool.uuid == uuid)).one()
        assert (pool.name, pool.scope, pool.capacity_bytes) == ("ps-2", "CLUSTER", 512 * GIB)

    run_form(lambda: PrimaryStorageForm(cloud.admin, cluster_uuid=CLUSTER), scenario)


def test_secondary_storage_form_url_error_and_creation(cloud: Cloud) -> None:
    build_world(cloud)

    async def scenario(app: ScreenApp, pilot: Pilot[Any]) -> None:
        await type_into(pilot, "name", "images-2")
        await type_into(pilot, "url", "ftp://nas/x")
        await save(app, pilot)
        assert "must be an absolute path, file:///path or nfs://server/path" in error_beside(
            app, "url"
        )
        await type_into(pilot, "url", "nfs://nas-2/export/images")
        await type_into(pilot, "capacity_bytes", "100")
        await save(app, pilot)
        (uuid,) = app.dismissed
        with cloud.db.read() as session:
            store = session.exec(select(ImageStore).where(ImageStore.uuid == uuid)).one()
        assert (store.url, store.capacity_bytes) == ("nfs://nas-2/export/images", 100 * GIB)

    run_form(lambda: SecondaryStorageForm(cloud.admin, zone_uuid=ZONE), scenario)


def test_setting_form_rejects_a_bad_value_and_sets_a_good_one(cloud: Cloud) -> None:
    name = "cpu.overprovisioning.factor"

    async def scenario(app: ScreenApp, pilot: Pilot[Any]) -> None:
        assert "Multiplies each host's CPU capacity" in screen_text(app)
        await type_into(pilot, "value", "fast")
        await save(app, pilot)
        assert error_beside(app, "value") == (
            "setting 'cpu.overprovisioning.factor': 'fast' is not a valid float"
        )
        await type_into(pilot, "value", "4")
        await save(app, pilot)
        assert app.dismissed == [name]
        view = next(v for v in settings.list_settings(cloud.admin) if v.name == name)
        assert (view.effective, view.source) == ("4", "global")

    run_form(lambda: SettingForm(cloud.admin, name), scenario)


def test_setting_form_at_a_cluster_scope(cloud: Cloud) -> None:
    build_world(cloud)
    name = "cluster.cpu.allocated.capacity.disablethreshold"

    async def scenario(app: ScreenApp, pilot: Pilot[Any]) -> None:
        assert value(app, "value") == "0.15"  # the cluster's own value
        await type_into(pilot, "value", "1.5")
        await save(app, pilot)
        assert "above the maximum 1" in error_beside(app, "value")
        await type_into(pilot, "value", "")
        await save(app, pilot)  # empty: back to inheriting the global value
        assert app.dismissed == [name]
        assert topology.get_cluster(cloud.admin, CLUSTER).cpu_disable_threshold is None

    run_form(
        lambda: SettingForm(cloud.admin, name, scope_type="cluster", scope_uuid=CLUSTER), scenario
    )


# --- editing ----------------------------------------------------------------------------


def test_edit_zone_sends_only_what_changed_and_shows_a_clash_beside_the_name(
    cloud: Cloud,
) -> None:
    build_world(cloud)
    topology.create_zone(cloud.admin, "us-east", dns1="192.0.2.9")

    async def scenario(app: ScreenApp, pilot: Pilot[Any]) -> None:
        assert (value(app, "name"), value(app, "dns1")) == ("eu-west", "192.0.2.53")
        await type_into(pilot, "name", "us-east")
        await save(app, pilot)
        assert error_beside(app, "name") == "zone 'eu-west': the name 'us-east' is already taken"
        await type_into(pilot, "name", "eu-west-1")
        await save(app, pilot)
        assert app.dismissed == [ZONE]
        assert topology.get_zone(cloud.admin, ZONE).name == "eu-west-1"
        with cloud.db.read() as session:
            last = session.exec(select(Event).order_by(Event.id.desc())).first()  # type: ignore[union-attr]
        assert last is not None and last.description == "changed name"

    run_form(lambda: ZoneForm(cloud.admin, ZONE), scenario)


def test_edit_host_address_error(cloud: Cloud) -> None:
    build_world(cloud)

    async def scenario(app: ScreenApp, pilot: Pilot[Any]) -> None:
        assert (value(app, "name"), value(app, "address"), value(app, "tags")) == (
            "a1",
            "10.1.0.11",
            "ssd",
        )
        await type_into(pilot, "address", "10.1.0.1")
        await save(app, pilot)
        assert (
            error_beside(app, "address")
            == "host 'a1': address 10.1.0.1 is the gateway of pod 'rack-1'"
        )
        assert value(app, "address") == "10.1.0.1"

    run_form(lambda: HostForm(cloud.admin, HOST_UP), scenario)


def test_an_error_for_no_input_goes_to_the_form_line(cloud: Cloud) -> None:
    build_world(cloud)
    zone = topology.create_zone(cloud.admin, "gone", dns1="192.0.2.9")

    async def scenario(app: ScreenApp, pilot: Pilot[Any]) -> None:
        topology.delete_zone(cloud.admin, zone.uuid)  # deleted while the form is open
        await type_into(pilot, "description", "too late")
        await save(app, pilot)
        assert shown_errors(app) == {}
        form_error = app.screen.query_one("#form-error", Static)
        assert form_error.has_class("-shown")
        assert f"zone '{zone.uuid}' does not exist" in str(form_error.render())
        assert value(app, "description") == "too late"

    run_form(lambda: ZoneForm(cloud.admin, zone.uuid), scenario)


def test_an_unexpected_failure_is_one_line_and_a_notification(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk on fire [b]x[/b]")

    monkeypatch.setattr(topology, "create_zone", broken)

    async def scenario(app: ScreenApp, pilot: Pilot[Any]) -> None:
        await type_into(pilot, "name", "z")
        await save(app, pilot)
        assert isinstance(app.screen, ZoneForm) and app.is_running
        assert any("RuntimeError: disk on fire [b]x[/b]" in t for t in toasts(app))
        assert "Traceback" not in screen_text(app)

    run_form(lambda: ZoneForm(cloud.admin), scenario)


# --- read-only and wiring ---------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(FORMS))
def test_read_only_mode_refuses_every_form(cloud: Cloud, kind: str) -> None:
    before = db_snapshot(cloud)
    make = FORMS[kind]
    args = ("cpu.overprovisioning.factor",) if kind == "setting" else ()

    async def scenario(app: ScreenApp, pilot: Pilot[Any]) -> None:
        assert not isinstance(app.screen, FormScreen)
        assert app.dismissed == [None]
        assert any("Read-only console" in t for t in toasts(app))
        await pilot.press("ctrl+s")

    run_form(lambda: make(cloud.admin, *args), scenario, read_only=True)
    assert db_snapshot(cloud) == before


def test_a_saved_edit_refreshes_the_detail_screen(cloud: Cloud) -> None:
    build_world(cloud)

    async def scenario(app: ScreenApp, pilot: Pilot[Any]) -> None:
        await pilot.press("e")
        await settle(app, pilot)
        await type_into(pilot, "description", "Amsterdam")
        await save(app, pilot)
        assert isinstance(app.screen, ZoneDetailScreen)
        assert "Description     Amsterdam" in screen_text(app)

    run_form(
        lambda: ZoneDetailScreen(cloud.admin, ZONE, refresh_seconds=0, clock=frozen_clock),
        scenario,
    )


def test_every_binding_has_an_id() -> None:
    for binding in FormScreen.BINDINGS:
        assert binding.id, f"binding {binding.key!r} has no id"  # type: ignore[union-attr]


# --- snapshot ---------------------------------------------------------------------------


def test_form_with_an_error_snapshot(cloud: Cloud, snap_compare: Any) -> None:
    build_world(cloud)
    app = ScreenApp(lambda: PodForm(cloud.admin, zone_uuid=ZONE))

    async def rejected(pilot: Pilot[Any]) -> None:
        await settle(pilot.app, pilot)  # type: ignore[arg-type]
        for name, text in (("name", "rack-2"), ("gateway", "10.2.0.1"), ("netmask", "24"),
                           ("start_ip", "10.9.0.10"), ("end_ip", "10.9.0.50")):  # fmt: skip
            pilot.app.screen.query_one(f"#input-{name}", Input).value = text
        await pilot.press("ctrl+s")
        await settle(pilot.app, pilot)  # type: ignore[arg-type]
        pilot.app.screen.query_one("#input-start_ip", Input).cursor_blink = False

    assert snap_compare(app, terminal_size=(120, 40), run_before=rejected)
