"""Validation rules of offerings and settings: each bad input raises the specific typed error
naming the object and the rule, and writes nothing (every table, the audit log included).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from helpers import GIB, MIB, db_snapshot, events, make_world, rejects
from sqlmodel import select

from engine import offerings as o
from engine import topology as t
from engine.errors import AlreadyExists, InvalidParameter, NotFound
from engine.models import Account, ConfigurationOverride
from engine.settings import SettingDefinition, list_settings, update_setting

# --- service offerings -------------------------------------------------------------------


def _offering(cloud, name: str = "small", **kwargs: Any):
    values: dict[str, Any] = {"cpu_count": 1, "cpu_mhz": 1000, "memory_bytes": 512 * MIB}
    values.update(kwargs)
    return o.create_service_offering(cloud.admin, name, **values)


@pytest.mark.parametrize(
    ("kwargs", "rule", "field"),
    [
        ({"cpu_count": 0}, "CPU count must be at least 1, got 0", "cpu_count"),
        ({"cpu_count": -2}, "CPU count must be at least 1, got -2", "cpu_count"),
        ({"cpu_count": "two"}, "CPU count 'two' is not a whole number", "cpu_count"),
        ({"cpu_count": 1.5}, "CPU count 1.5 is not a whole number", "cpu_count"),
        ({"cpu_mhz": 0}, "CPU speed (MHz) must be at least 1, got 0", "cpu_mhz"),
        ({"cpu_mhz": -1000}, "CPU speed (MHz) must be at least 1, got -1000", "cpu_mhz"),
        ({"memory_bytes": 0}, "memory (bytes) must be at least 1, got 0", "memory_bytes"),
        (
            {"memory_bytes": 32 * MIB - 1},
            "memory must be at least 32 MiB, got 31 MiB",
            "memory_bytes",
        ),
        ({"memory_bytes": 16 * MIB}, "memory must be at least 32 MiB, got 16 MiB", "memory_bytes"),
        ({"host_tags": ["gpu", "a b"]}, "tag 'a b' may hold only", "host_tags"),
        ({"host_tags": "ok, x/y"}, "tag 'x/y' may hold only", "host_tags"),
        ({"storage_tags": ["ssd,nvme"]}, "tag 'ssd,nvme' may hold only", "storage_tags"),
        (
            {"deployment_planner": "BestFitPlanner"},
            "deployment planner 'BestFitPlanner' is not one of FirstFitPlanner, "
            "UserDispersingPlanner, UserConcentratedPodPlanner",
            "deployment_planner",
        ),
        (
            {"deployment_planner": "firstfitplanner"},
            "deployment planner 'firstfitplanner' is not one of",
            "deployment_planner",
        ),
        ({"display_text": "d" * 1025}, "display_text is 1025 characters long", "display_text"),
        ({"display_text": "a\x00b"}, "display_text contains control characters", "display_text"),
    ],
)
def test_service_offering_rules(cloud, kwargs: dict[str, Any], rule: str, field: str) -> None:
    with rejects(cloud, InvalidParameter, "service offering 'small'", rule, field=field):
        _offering(cloud, **kwargs)


@pytest.mark.parametrize("name", ["", "   ", "x" * 256, "a\tb"])
def test_service_offering_bad_names(cloud, name: str) -> None:
    with rejects(cloud, InvalidParameter, "service offering '", field="name"):
        _offering(cloud, name)


def test_service_offering_smallest_valid_and_normalised(cloud) -> None:
    offering = _offering(
        cloud,
        memory_bytes=32 * MIB,
        host_tags="ssd, gpu,ssd",
        deployment_planner="UserDispersingPlanner",
    )
    assert (offering.memory_bytes, offering.host_tags, offering.display_text) == (
        32 * MIB,
        "gpu,ssd",
        "small",
    )


def test_service_offering_duplicate_name(cloud) -> None:
    _offering(cloud, "small")
    with rejects(
        cloud,
        AlreadyExists,
        "service offering 'small'",
        "the name 'small' is already taken",
        field="name",
    ):
        _offering(cloud, "small", cpu_count=2)


def test_update_service_offering_rules(cloud) -> None:
    small = _offering(cloud, "small")
    _offering(cloud, "medium", cpu_count=2)
    admin = cloud.admin
    with rejects(
        cloud, AlreadyExists, "service offering 'small'", "'medium' is already taken", field="name"
    ):
        o.update_service_offering(admin, small.uuid, name="medium")
    with rejects(
        cloud, InvalidParameter, "service offering 'small'", "tag 'a b'", field="host_tags"
    ):
        o.update_service_offering(admin, small.uuid, host_tags=["a b"])
    with rejects(
        cloud,
        InvalidParameter,
        "service offering 'small'",
        "state 'Retired' is not Active or Inactive",
        field="state",
    ):
        o.update_service_offering(admin, small.uuid, state="Retired")
    with rejects(cloud, NotFound, "service offering 'large' does not exist", field="offering"):
        o.update_service_offering(admin, "large", display_text="x")


@pytest.mark.parametrize("fixed", ["cpu_count", "cpu_mhz", "memory_bytes", "deployment_planner"])
def test_update_service_offering_sizes_cannot_change(cloud, fixed: str) -> None:
    small = _offering(cloud, "small")
    with rejects(
        cloud,
        InvalidParameter,
        f"{fixed} cannot be changed",
        "changeable: display_text, host_tags, name, state, storage_tags",
        field=fixed,
    ):
        o.update_service_offering(cloud.admin, small.uuid, **{fixed: 4})


def test_update_service_offering_fixed_field_names_the_offering(cloud) -> None:
    """House rule 3: the message names the object ('small'), not only its kind."""
    small = _offering(cloud, "small")
    with rejects(
        cloud, InvalidParameter, "service offering 'small'", "cpu_count cannot be changed"
    ):
        o.update_service_offering(cloud.admin, small.uuid, cpu_count=4)


# --- disk offerings ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "rule", "field"),
    [
        ({}, "a fixed-size disk offering needs a size of at least 1 GiB", "disk_size_bytes"),
        (
            {"disk_size_bytes": GIB - 1},
            "a fixed-size disk offering needs a size of at least 1 GiB",
            "disk_size_bytes",
        ),
        (
            {"disk_size_bytes": -GIB},
            f"disk size (bytes) must be at least 0, got {-GIB}",
            "disk_size_bytes",
        ),
        (
            {"disk_size_bytes": "10G"},
            "disk size (bytes) '10G' is not a whole number",
            "disk_size_bytes",
        ),
        (
            {"disk_size_bytes": GIB, "provisioning_type": "thick"},
            "provisioning type 'thick' is not one of thin, sparse, fat",
            "provisioning_type",
        ),
        (
            {"disk_size_bytes": GIB, "provisioning_type": "Thick"},
            "provisioning type 'thick' is not one of thin, sparse, fat",
            "provisioning_type",
        ),
        (
            {"disk_size_bytes": GIB, "storage_tags": ["ok", "not ok"]},
            "tag 'not ok' may hold only",
            "storage_tags",
        ),
    ],
)
def test_disk_offering_rules(cloud, kwargs: dict[str, Any], rule: str, field: str) -> None:
    with rejects(cloud, InvalidParameter, "disk offering 'd1'", rule, field=field):
        o.create_disk_offering(cloud.admin, "d1", **kwargs)


def test_disk_offering_good_variants(cloud) -> None:
    fixed = o.create_disk_offering(cloud.admin, "d1", disk_size_bytes=GIB, provisioning_type="fat")
    custom = o.create_disk_offering(cloud.admin, "custom", is_customized=True)
    assert (fixed.disk_size_bytes, custom.disk_size_bytes, custom.is_customized) == (GIB, 0, True)


def test_disk_offering_duplicate_name(cloud) -> None:
    o.create_disk_offering(cloud.admin, "d1", disk_size_bytes=GIB)
    with rejects(
        cloud, AlreadyExists, "disk offering 'd1'", "the name 'd1' is already taken", field="name"
    ):
        o.create_disk_offering(cloud.admin, "d1", disk_size_bytes=2 * GIB)


def test_delete_unknown_offerings(cloud) -> None:
    ref = str(uuid.uuid4())
    with rejects(cloud, NotFound, f"service offering '{ref}' does not exist"):
        o.delete_service_offering(cloud.admin, ref)
    with rejects(cloud, NotFound, f"disk offering '{ref}' does not exist"):
        o.delete_disk_offering(cloud.admin, ref)


# --- settings: values --------------------------------------------------------------------


def test_unknown_setting(cloud) -> None:
    with rejects(cloud, NotFound, "setting 'no.such.setting' does not exist", field="name"):
        update_setting(cloud.admin, "no.such.setting", "1")


@pytest.mark.parametrize(
    ("name", "value", "rule"),
    [
        ("start.retry", "ten", "'ten' is not a valid int"),
        ("start.retry", "1.5", "'1.5' is not a valid int"),
        ("start.retry", "", "'' is not a valid int"),
        ("cpu.overprovisioning.factor", "lots", "'lots' is not a valid float"),
        ("cpu.overprovisioning.factor", "1,5", "'1,5' is not a valid float"),
        ("cpu.overprovisioning.factor", "0.5", "0.5 is below the minimum 1"),
        ("storage.overprovisioning.factor", "0", "0.0 is below the minimum 1"),
        ("start.retry", "-1", "-1 is below the minimum 0"),
        ("max.account.user.vms", "-2", "-2 is below the minimum -1"),
        ("expunge.interval", "0", "0 is below the minimum 1"),
        ("default.page.size", "10001", "10001 is above the maximum 10000"),
        ("cluster.cpu.allocated.capacity.disablethreshold", "1.5", "1.5 is above the maximum 1"),
        ("default.page.size", "0", "0 is below the minimum 1"),
        ("default.page.size", "10001", "10001 is above the maximum 10000"),
        (
            "vm.allocation.algorithm",
            "roundrobin",
            "'roundrobin' is not one of random, firstfit, userdispersing, firstfitleastconsumed",
        ),
        ("host.capacityType.to.order.clusters", "cpu", "'cpu' is not one of CPU, RAM"),
        ("vm.deployment.planner", "BestFit", "'BestFit' is not one of FirstFitPlanner"),
    ],
)
def test_global_setting_value_rules(cloud, name: str, value: str, rule: str) -> None:
    with rejects(cloud, InvalidParameter, f"setting '{name}'", rule, field="value"):
        update_setting(cloud.admin, name, value)


@pytest.mark.parametrize(
    "name",
    [
        "cpu.overprovisioning.factor",
        "storage.overprovisioning.factor",
        "pool.storage.capacity.disablethreshold",
    ],
)
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_float_settings_reject_non_finite_values(cloud, name: str, value: str) -> None:
    """A factor or threshold of NaN or infinity makes every capacity check meaningless."""
    with rejects(cloud, InvalidParameter, f"setting '{name}'", field="value"):
        update_setting(cloud.admin, name, value)


def _bool_definition() -> SettingDefinition:
    return SettingDefinition(
        name="test.flag",
        default="false",
        value_type="bool",
        scopes=(),
        category="Test",
        description="",
    )


@pytest.mark.parametrize("raw", ["yes", "1", "on", "", "truthy"])
def test_bool_setting_values_must_be_true_or_false(raw: str) -> None:
    # No shipped setting is a bool yet; the parser is what every future one will use.
    with pytest.raises(InvalidParameter) as info:
        _bool_definition().parse(raw)
    assert f"setting 'test.flag': {raw!r} is not a valid bool" in str(info.value)
    assert info.value.field == "value"


@pytest.mark.parametrize(("raw", "parsed"), [("true", True), (" FALSE ", False), ("True", True)])
def test_bool_setting_values_parse(raw: str, parsed: bool) -> None:
    assert _bool_definition().parse(raw) is parsed


def test_good_global_values_are_stored_and_reported(cloud) -> None:
    view = update_setting(cloud.admin, "start.retry", " 3 ")
    assert (view.global_value, view.effective, view.source) == ("3", "3", "global")
    view = update_setting(cloud.admin, "start.retry", None)
    assert (view.global_value, view.effective, view.source) == (None, "10", "default")


# --- settings: scopes --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "scope", "allowed"),
    [
        ("start.retry", "zone", "none"),
        ("start.retry", "cluster", "none"),
        ("cpu.overprovisioning.factor", "zone", "cluster"),
        ("cpu.overprovisioning.factor", "storagepool", "cluster"),
        ("storage.overprovisioning.factor", "cluster", "storagepool"),
        ("max.account.user.vms", "zone", "account"),
        ("capacity.skipcounting.hours", "account", "cluster"),
    ],
)
def test_override_at_a_scope_the_setting_does_not_allow(
    cloud, name: str, scope: str, allowed: str
) -> None:
    world = make_world(cloud)
    pool = t.create_storage_pool(cloud.admin, "ps1", path="/srv/ps1", cluster_ref="c1")
    with cloud.db.read() as session:
        account = session.exec(select(Account).where(Account.name == "admin")).one()
    scope_uuid = {
        "zone": world.zone.uuid,
        "cluster": world.cluster.uuid,
        "storagepool": pool.uuid,
        "account": account.uuid,
    }[scope]
    with rejects(
        cloud,
        InvalidParameter,
        f"setting '{name}' cannot be overridden per {scope} (scopes allowed: {allowed})",
        field="scope",
    ):
        update_setting(cloud.admin, name, "2", scope_type=scope, scope_uuid=scope_uuid)


@pytest.mark.parametrize("scope", ["zone", "cluster", "storagepool", "account"])
def test_override_for_a_scope_object_that_does_not_exist(cloud, scope: str) -> None:
    missing = str(uuid.uuid4())
    with rejects(cloud, NotFound, f"{scope} {missing} does not exist", field="scope"):
        update_setting(
            cloud.admin, "cpu.overprovisioning.factor", "2", scope_type=scope, scope_uuid=missing
        )


def test_override_at_an_unknown_scope_type(cloud) -> None:
    world = make_world(cloud)
    with rejects(
        cloud,
        InvalidParameter,
        "scope 'host' is not one of global, zone, cluster, storagepool, account",
        field="scope",
    ):
        update_setting(
            cloud.admin,
            "cpu.overprovisioning.factor",
            "2",
            scope_type="host",
            scope_uuid=world.host.uuid,
        )


def test_scoped_bad_value_names_the_object(cloud) -> None:
    world = make_world(cloud)
    with rejects(
        cloud,
        InvalidParameter,
        "setting 'cpu.overprovisioning.factor' for cluster 'c1': 0.9 is below the minimum 1",
        field="value",
    ):
        update_setting(
            cloud.admin,
            "cpu.overprovisioning.factor",
            "0.9",
            scope_type="cluster",
            scope_uuid=world.cluster.uuid,
        )


# The same column is written by create/update_cluster and by a cluster-scope setting: one
# column, one rule. Each value here is refused by update_cluster.
COLUMN_CASES = [
    pytest.param("cpu.overprovisioning.factor", "0.5", id="cpu-factor-0.5"),
    pytest.param("cpu.overprovisioning.factor", "nan", id="cpu-factor-nan"),
    pytest.param("mem.overprovisioning.factor", "inf", id="mem-factor-inf"),
    pytest.param("cluster.cpu.allocated.capacity.disablethreshold", "0", id="cpu-threshold-0"),
    pytest.param("cluster.memory.allocated.capacity.disablethreshold", "1.2", id="mem-thr-1.2"),
    pytest.param("cluster.memory.allocated.capacity.disablethreshold", "nan", id="mem-thr-nan"),
]


@pytest.mark.parametrize(("name", "value"), COLUMN_CASES)
def test_cluster_column_settings_follow_the_cluster_rules(cloud, name: str, value: str) -> None:
    world = make_world(cloud)
    column = {
        "cpu.overprovisioning.factor": "cpu_overprovisioning_factor",
        "mem.overprovisioning.factor": "mem_overprovisioning_factor",
        "cluster.cpu.allocated.capacity.disablethreshold": "cpu_disable_threshold",
        "cluster.memory.allocated.capacity.disablethreshold": "mem_disable_threshold",
    }[name]
    with rejects(cloud, InvalidParameter, "cluster 'c1'", field=column):
        t.update_cluster(cloud.admin, world.cluster.uuid, **{column: value})
    with rejects(cloud, InvalidParameter, f"setting '{name}' for cluster 'c1'", field="value"):
        update_setting(
            cloud.admin, name, value, scope_type="cluster", scope_uuid=world.cluster.uuid
        )


def _view(cloud, name: str, **scope: str):
    return next(v for v in list_settings(cloud.admin, **scope) if v.name == name)


def _overrides(cloud) -> list[tuple[str, str, int, str]]:
    with cloud.db.read() as session:
        rows = session.exec(select(ConfigurationOverride).order_by(ConfigurationOverride.id))
        return [(r.name, r.scope_type, r.scope_id, r.value) for r in rows]


def test_cluster_override_of_a_column_setting_lands_in_the_cluster_column(cloud) -> None:
    world = make_world(cloud)
    scope = {"scope_type": "cluster", "scope_uuid": world.cluster.uuid}
    view = update_setting(cloud.admin, "cpu.overprovisioning.factor", "2.5", **scope)
    assert (view.effective, view.source) == ("2.5", "cluster")
    assert t.get_cluster(cloud.admin, world.cluster.uuid).cpu_overprovisioning_factor == 2.5
    assert _overrides(cloud) == []  # the column is the override; no second copy
    assert (_view(cloud, "cpu.overprovisioning.factor", **scope).source) == "cluster"
    # Globally nothing changed.
    global_view = _view(cloud, "cpu.overprovisioning.factor")
    assert (global_view.effective, global_view.source, global_view.global_value) == (
        "1.0",
        "default",
        None,
    )
    # Another cluster still inherits.
    other = t.create_cluster(cloud.admin, "rack-1", "c2")
    other_view = _view(
        cloud, "cpu.overprovisioning.factor", scope_type="cluster", scope_uuid=other.uuid
    )
    assert (other_view.effective, other_view.source) == ("1.0", "default")
    # A global value is what inheriting clusters see; the override still wins.
    update_setting(cloud.admin, "cpu.overprovisioning.factor", "1.5")
    assert (
        _view(
            cloud, "cpu.overprovisioning.factor", scope_type="cluster", scope_uuid=other.uuid
        ).source
        == "global"
    )
    assert _view(cloud, "cpu.overprovisioning.factor", **scope).effective == "2.5"
    # None resets the cluster to inheriting.
    view = update_setting(cloud.admin, "cpu.overprovisioning.factor", None, **scope)
    assert (view.effective, view.source) == ("1.5", "global")
    assert t.get_cluster(cloud.admin, world.cluster.uuid).cpu_overprovisioning_factor is None


def test_override_of_a_row_setting_is_stored_and_reset(cloud) -> None:
    world = make_world(cloud)
    scope = {"scope_type": "cluster", "scope_uuid": world.cluster.uuid}
    view = update_setting(cloud.admin, "capacity.skipcounting.hours", "600", **scope)
    assert (view.effective, view.source) == ("600", "cluster")
    assert _overrides(cloud) == [
        ("capacity.skipcounting.hours", "cluster", world.cluster.id, "600")
    ]
    update_setting(cloud.admin, "capacity.skipcounting.hours", "900", **scope)
    assert [r[3] for r in _overrides(cloud)] == ["900"]  # updated in place, not duplicated
    view = update_setting(cloud.admin, "capacity.skipcounting.hours", None, **scope)
    assert (view.effective, view.source) == ("3600", "default")
    assert _overrides(cloud) == []


def test_account_override(cloud) -> None:
    with cloud.db.read() as session:
        account = session.exec(select(Account).where(Account.name == "admin")).one()
    scope = {"scope_type": "account", "scope_uuid": account.uuid}
    view = update_setting(cloud.admin, "max.account.user.vms", "-1", **scope)
    assert (view.effective, view.source) == ("-1", "account")


def test_list_settings_at_a_scope_shows_only_settings_of_that_scope(cloud) -> None:
    world = make_world(cloud)
    names = {
        v.name
        for v in list_settings(cloud.admin, scope_type="cluster", scope_uuid=world.cluster.uuid)
    }
    assert names == {
        "cpu.overprovisioning.factor",
        "mem.overprovisioning.factor",
        "cluster.cpu.allocated.capacity.disablethreshold",
        "cluster.memory.allocated.capacity.disablethreshold",
        "capacity.skipcounting.hours",
    }


def test_settings_changes_are_audited(cloud) -> None:
    world = make_world(cloud)
    before = len(events(cloud))
    update_setting(cloud.admin, "start.retry", "4")
    update_setting(
        cloud.admin,
        "cpu.overprovisioning.factor",
        "2",
        scope_type="cluster",
        scope_uuid=world.cluster.uuid,
    )
    new = events(cloud)[before:]
    assert [(e.event_type, e.username, e.description) for e in new] == [
        ("CONFIGURATION.VALUE.EDIT", "admin", "set start.retry to 4"),
        (
            "CONFIGURATION.VALUE.EDIT",
            "admin",
            "set cpu.overprovisioning.factor for cluster 'c1' to 2",
        ),
    ]


def test_rejected_setting_change_leaves_the_snapshot(cloud) -> None:
    """The snapshot helper itself notices a settings write (a control for `rejects`)."""
    before = db_snapshot(cloud)
    update_setting(cloud.admin, "start.retry", "4")
    after = db_snapshot(cloud)
    assert before["configuration"] != after["configuration"]
    assert before["event"].rows + 1 == after["event"].rows
