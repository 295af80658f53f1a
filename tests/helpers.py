"""Helpers for tests of the engine services: database snapshots and small topologies.

`rejects` is the assertion behind "bad input changes nothing": it snapshots every table of
the schema (row count and a digest of the rows), expects one specific typed error whose
message contains the given fragments, and checks that the snapshot did not change.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlmodel import SQLModel

import engine.models  # noqa: F401  (registers every table in SQLModel.metadata)
from engine import topology
from engine.bootstrap import Cloud
from engine.errors import StratusError
from engine.models import Cluster, Event, Host, Pod, Zone

GIB = 2**30
MIB = 2**20

_UNSET: Any = object()


# --- snapshots ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TableState:
    rows: int
    digest: str


def db_snapshot(cloud: Cloud) -> dict[str, TableState]:
    """Row count and a digest of the rows (in primary-key order) of every table.

    Every table of SQLModel.metadata is covered, the audit log (`event`) included, so a
    rejected call that wrote anything at all (a row, a changed column, an event) shows up.
    """
    state = {}
    with cloud.db.read() as session:
        for table in SQLModel.metadata.sorted_tables:
            count = session.execute(select(func.count()).select_from(table)).scalar_one()
            digest = hashlib.sha256()
            rows = session.execute(select(table).order_by(*table.primary_key.columns))
            for row in rows:
                digest.update(repr(tuple(row)).encode())
                digest.update(b"\n")
            state[table.name] = TableState(count, digest.hexdigest())
    return state


def changed_tables(before: dict[str, TableState], after: dict[str, TableState]) -> list[str]:
    return sorted(
        name for name in before.keys() | after.keys() if before.get(name) != after.get(name)
    )


@contextmanager
def rejects(
    cloud: Cloud,
    error: type[StratusError],
    *fragments: str,
    field: str | None = _UNSET,
) -> Iterator[pytest.ExceptionInfo[StratusError]]:
    """Expect exactly `error` (not a sibling), a message holding every fragment, and no write.

    `field`, when given, must equal `err.field` (None asserts that the service set none).
    """
    before = db_snapshot(cloud)
    with pytest.raises(StratusError) as info:
        yield info
    err = info.value
    assert type(err) is error, f"expected {error.__name__}, got {type(err).__name__}: {err}"
    message = str(err)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} is not in the message {message!r}"
    if field is not _UNSET:
        assert err.field == field, f"err.field is {err.field!r}, expected {field!r} ({message})"
    after = db_snapshot(cloud)
    assert not changed_tables(before, after), (
        f"rejected call changed tables {changed_tables(before, after)}: {message}"
    )


# --- direct writes for test set-up -------------------------------------------------------


def set_columns(cloud: Cloud, model: type[SQLModel], uuid: str, **values: Any) -> None:
    """Write columns no service sets yet (claimed capacity, maintenance states...)."""
    with cloud.db.write() as session:
        result = session.execute(
            update(model).where(model.uuid == uuid).values(**values)  # type: ignore[attr-defined]
        )
        assert result.rowcount == 1


def events(cloud: Cloud) -> list[Event]:
    """Every event, oldest first."""
    with cloud.db.read() as session:
        return list(session.execute(select(Event).order_by(Event.id)).scalars())


def event_count(cloud: Cloud) -> int:
    with cloud.db.read() as session:
        return session.execute(select(func.count()).select_from(Event)).scalar_one()


# --- small topologies --------------------------------------------------------------------


def make_zone(cloud: Cloud, name: str = "z1", **kwargs: Any) -> Zone:
    kwargs.setdefault("dns1", "8.8.8.8")
    return topology.create_zone(cloud.admin, name, **kwargs)


def make_pod(
    cloud: Cloud, zone: str = "z1", name: str = "rack-1", *, third_octet: int = 1, **kwargs: Any
) -> Pod:
    """A /24 pod 10.1.<third_octet>.0/24, gateway .1, management range .10-.100."""
    net = f"10.1.{third_octet}"
    kwargs.setdefault("gateway", f"{net}.1")
    kwargs.setdefault("netmask", "255.255.255.0")
    kwargs.setdefault("start_ip", f"{net}.10")
    kwargs.setdefault("end_ip", f"{net}.100")
    return topology.create_pod(cloud.admin, zone, name, **kwargs)


def make_cluster(cloud: Cloud, pod: str = "rack-1", name: str = "c1", **kwargs: Any) -> Cluster:
    return topology.create_cluster(cloud.admin, pod, name, **kwargs)


def host_spec(name: str = "h1", **kwargs: Any) -> topology.HostSpec:
    """A test-driver host: 8 cores at 2000 MHz, 16 GiB."""
    values: dict[str, Any] = {
        "name": name,
        "uri": f"test:///hosts/{name}.xml",
        "cpu_cores": 8,
        "cpu_mhz": 2000,
        "memory_bytes": 16 * GIB,
    }
    values.update(kwargs)
    return topology.HostSpec(**values)


@dataclass
class World:
    """zone z1 (Advanced) → pod rack-1 (10.1.1.0/24) → cluster c1 → host h1."""

    zone: Zone
    pod: Pod
    cluster: Cluster
    host: Host


def make_world(cloud: Cloud) -> World:
    zone = make_zone(cloud)
    pod = make_pod(cloud)
    cluster = make_cluster(cloud)
    host = topology.add_host(cloud.admin, cluster.uuid, host_spec("h1", address="10.1.1.150"))
    return World(zone, pod, cluster, host)
