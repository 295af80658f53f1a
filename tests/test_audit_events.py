"""Every successful create, update and delete records exactly one audit event: the acting
admin, the CloudStack event type, and the uuid and name of the object it touched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from helpers import GIB, events, host_spec, make_world, set_columns

from engine import offerings as o
from engine import topology as t
from engine.bootstrap import Cloud
from engine.models import Host


@dataclass
class Objects:
    """A topology with one spare object of every kind, so each operation is one call."""

    zone: Any
    spare_zone: Any
    pod: Any
    spare_pod: Any
    cluster: Any
    spare_cluster: Any
    host: Any
    disabled_host: Any
    pool: Any
    store: Any
    offering: Any
    disk_offering: Any


def _objects(cloud: Cloud) -> Objects:
    admin = cloud.admin
    world = make_world(cloud)
    spare_zone = t.create_zone(admin, "z-spare", dns1="1.1.1.1")
    spare_pod = t.create_pod(
        admin, "z1", "rack-spare", gateway="10.1.9.1", netmask="24", start_ip="10.1.9.10"
    )
    spare_cluster = t.create_cluster(admin, "rack-1", "c-spare")
    disabled_host = t.add_host(admin, "c1", host_spec("h-off"))
    set_columns(cloud, Host, disabled_host.uuid, resource_state="Disabled")
    pool = t.create_storage_pool(admin, "ps1", path="/srv/ps1", cluster_ref="c1")
    store = t.add_image_store(admin, "z1", "sec1", url="/srv/sec1")
    offering = o.create_service_offering(
        admin, "small", cpu_count=1, cpu_mhz=1000, memory_bytes=GIB
    )
    disk_offering = o.create_disk_offering(admin, "d1", disk_size_bytes=GIB)
    return Objects(
        world.zone,
        spare_zone,
        world.pod,
        spare_pod,
        world.cluster,
        spare_cluster,
        world.host,
        disabled_host,
        pool,
        store,
        offering,
        disk_offering,
    )


# Each operation returns the object the event must name (created ones are returned by the
# service; for updates and deletes it is an object of the set-up).
Op = Callable[[Any, Objects], Any]

OPERATIONS: list[Any] = [
    # zones
    ("ZONE.CREATE", "Zone", lambda a, w: t.create_zone(a, "z-new", dns1="9.9.9.9")),
    ("ZONE.EDIT", "Zone", lambda a, w: t.update_zone(a, w.zone.uuid, description="dc 1")),
    ("ZONE.EDIT", "Zone", lambda a, w: t.disable_zone(a, w.zone.uuid)),
    ("ZONE.DELETE", "Zone", lambda a, w: (t.delete_zone(a, w.spare_zone.uuid), w.spare_zone)[1]),
    # pods
    (
        "POD.CREATE",
        "Pod",
        lambda a, w: t.create_pod(
            a, "z1", "rack-new", gateway="10.1.5.1", netmask="24", start_ip="10.1.5.5"
        ),
    ),
    ("POD.EDIT", "Pod", lambda a, w: t.update_pod(a, w.pod.uuid, end_ip="10.1.1.99")),
    ("POD.EDIT", "Pod", lambda a, w: t.disable_pod(a, w.pod.uuid)),
    ("POD.DELETE", "Pod", lambda a, w: (t.delete_pod(a, w.spare_pod.uuid), w.spare_pod)[1]),
    # clusters
    ("CLUSTER.CREATE", "Cluster", lambda a, w: t.create_cluster(a, "rack-1", "c-new")),
    (
        "CLUSTER.EDIT",
        "Cluster",
        lambda a, w: t.update_cluster(a, w.cluster.uuid, cpu_overprovisioning_factor=2),
    ),
    ("CLUSTER.EDIT", "Cluster", lambda a, w: t.disable_cluster(a, w.cluster.uuid)),
    (
        "CLUSTER.DELETE",
        "Cluster",
        lambda a, w: (t.delete_cluster(a, w.spare_cluster.uuid), w.spare_cluster)[1],
    ),
    # hosts
    ("HOST.ADD", "Host", lambda a, w: t.add_host(a, "c1", host_spec("h-new"))),
    ("HOST.UPDATE", "Host", lambda a, w: t.update_host(a, w.host.uuid, tags=["ssd"])),
    ("HOST.DISABLE", "Host", lambda a, w: t.disable_host(a, w.host.uuid)),
    ("HOST.ENABLE", "Host", lambda a, w: t.enable_host(a, w.disabled_host.uuid)),
    ("HOST.DELETE", "Host", lambda a, w: (t.delete_host(a, w.host.uuid), w.host)[1]),
    # primary storage
    (
        "STORAGE.POOL.CREATE",
        "StoragePool",
        lambda a, w: t.create_storage_pool(a, "ps-new", path="/srv/new", zone_ref="z1"),
    ),
    (
        "STORAGE.POOL.EDIT",
        "StoragePool",
        lambda a, w: t.update_storage_pool(a, w.pool.uuid, capacity_bytes=GIB),
    ),
    ("STORAGE.POOL.EDIT", "StoragePool", lambda a, w: t.disable_storage_pool(a, w.pool.uuid)),
    (
        "STORAGE.POOL.DELETE",
        "StoragePool",
        lambda a, w: (t.delete_storage_pool(a, w.pool.uuid), w.pool)[1],
    ),
    # image stores
    (
        "IMAGE.STORE.ADD",
        "ImageStore",
        lambda a, w: t.add_image_store(a, "z1", "sec-new", url="nfs://filer/sec"),
    ),
    (
        "IMAGE.STORE.EDIT",
        "ImageStore",
        lambda a, w: t.update_image_store(a, w.store.uuid, read_only=True),
    ),
    (
        "IMAGE.STORE.DELETE",
        "ImageStore",
        lambda a, w: (t.delete_image_store(a, w.store.uuid), w.store)[1],
    ),
    # offerings
    (
        "SERVICE.OFFERING.CREATE",
        "ServiceOffering",
        lambda a, w: o.create_service_offering(
            a, "large", cpu_count=4, cpu_mhz=2000, memory_bytes=8 * GIB
        ),
    ),
    (
        "SERVICE.OFFERING.EDIT",
        "ServiceOffering",
        lambda a, w: o.update_service_offering(a, w.offering.uuid, state="Inactive"),
    ),
    (
        "SERVICE.OFFERING.DELETE",
        "ServiceOffering",
        lambda a, w: (o.delete_service_offering(a, w.offering.uuid), w.offering)[1],
    ),
    (
        "DISK.OFFERING.CREATE",
        "DiskOffering",
        lambda a, w: o.create_disk_offering(a, "d-new", is_customized=True),
    ),
    (
        "DISK.OFFERING.DELETE",
        "DiskOffering",
        lambda a, w: (o.delete_disk_offering(a, w.disk_offering.uuid), w.disk_offering)[1],
    ),
]


def _op_id(op: Any) -> str:
    return op[0].lower()


@pytest.mark.parametrize(
    ("event_type", "resource_type", "operation"),
    [pytest.param(*op, id=f"{i:02d}-{_op_id(op)}") for i, op in enumerate(OPERATIONS)],
)
def test_each_change_records_exactly_one_event(
    cloud, event_type: str, resource_type: str, operation: Op
) -> None:
    objects = _objects(cloud)
    before = events(cloud)
    target = operation(cloud.admin, objects)
    new = events(cloud)[len(before) :]
    assert len(new) == 1, [(e.event_type, e.resource_name) for e in new]
    event = new[0]
    assert (
        event.event_type,
        event.resource_type,
        event.username,
        event.resource_uuid,
        event.resource_name,
        event.state,
        event.level,
    ) == (event_type, resource_type, "admin", target.uuid, target.name, "Completed", "INFO")
    admin = cloud.admin
    assert (event.user_id, event.account_id) == (admin.user_id, admin.account_id)
    assert admin.user_id is not None


def test_every_service_is_covered() -> None:
    """Each create/update/delete/enable/disable service has a case above."""
    covered = {op[0] for op in OPERATIONS}
    assert covered >= {
        "ZONE.CREATE",
        "ZONE.EDIT",
        "ZONE.DELETE",
        "POD.CREATE",
        "POD.EDIT",
        "POD.DELETE",
        "CLUSTER.CREATE",
        "CLUSTER.EDIT",
        "CLUSTER.DELETE",
        "HOST.ADD",
        "HOST.UPDATE",
        "HOST.ENABLE",
        "HOST.DISABLE",
        "HOST.DELETE",
        "STORAGE.POOL.CREATE",
        "STORAGE.POOL.EDIT",
        "STORAGE.POOL.DELETE",
        "IMAGE.STORE.ADD",
        "IMAGE.STORE.EDIT",
        "IMAGE.STORE.DELETE",
        "SERVICE.OFFERING.CREATE",
        "SERVICE.OFFERING.EDIT",
        "SERVICE.OFFERING.DELETE",
        "DISK.OFFERING.CREATE",
        "DISK.OFFERING.DELETE",
    }


def test_bulk_host_add_records_one_event_on_the_cluster(cloud) -> None:
    objects = _objects(cloud)
    before = len(events(cloud))
    added = t.add_hosts(cloud.admin, "c1", [host_spec(f"bulk{i}") for i in range(5)])
    new = events(cloud)[before:]
    assert len(added) == 5
    assert [(e.event_type, e.resource_type, e.resource_uuid, e.username) for e in new] == [
        ("HOST.ADD", "Cluster", objects.cluster.uuid, "admin")
    ]
    assert "added 5 hosts to cluster 'c1'" in new[0].description


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda a, w: t.enable_zone(a, w.zone.uuid), id="enable-enabled-zone"),
        pytest.param(lambda a, w: t.enable_host(a, w.host.uuid), id="enable-enabled-host"),
        pytest.param(
            lambda a, w: t.disable_host(a, w.disabled_host.uuid), id="disable-disabled-host"
        ),
        pytest.param(lambda a, w: t.enable_storage_pool(a, w.pool.uuid), id="enable-up-pool"),
        pytest.param(lambda a, w: t.add_hosts(a, "c1", []), id="add-no-hosts"),
    ],
)
def test_no_op_calls_record_no_event(cloud, call: Op) -> None:
    objects = _objects(cloud)
    before = len(events(cloud))
    call(cloud.admin, objects)
    assert len(events(cloud)) == before
