"""Host operations that touch a hypervisor, as jobs (ARCHITECTURE rule 6).

- `ProbeHost` (read-only): connect to a URI, read what libvirt says the host is, and check
  that the cluster it is meant for can use it. The result holds the facts, so a front end
  can show them before anything is saved.
- `AddHost`: connect, read the facts again and add the host (`facts.add_host_from_uri`:
  the topology rules, one transaction, an audit event); the host is then Up.
- `ReconnectHost`: drop the host's connection and open a new one; connecting marks the host
  Up and resyncs its power states (a test-driver host gets its domains back first).
- `PrepareHostMaintenance`: drain a host for maintenance (engine.hosts.maintenance, which
  registers it; submitted by `prepare_host_for_maintenance`, not `submit_host_job`).
- `RemoveHost`: remove the host from the topology (refused, with the topology's message,
  while VMs are on it), then close its connection.

Submit them with `submit_host_job`, which names the job's resource the way the jobs panel
shows it. Each writes in one transaction at most, so a run that dies leaves nothing half
done: the recover hooks only say so.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from sqlmodel import select

from engine import topology
from engine.context import Caller
from engine.errors import AlreadyExists, InvalidParameter, StratusError
from engine.hosts.connections import HostConnection
from engine.hosts.errors import HostUnavailable
from engine.hosts.facts import add_host_from_uri, check_driver, host_spec_from_facts, read_facts
from engine.jobs import JobContext, register_handler, submit_job
from engine.lookup import resolve
from engine.models import Cluster, Host, Job
from engine.validation import parse_host_uri

PROBE_TIMEOUT = 15.0


def _manager(ctx: JobContext) -> Any:
    if ctx.hosts is None:
        raise StratusError(
            f"{ctx.job_type} needs the host manager of a management server; this job runner "
            "has none"
        )
    return ctx.hosts


def _cluster(caller: Caller, cluster_ref: str) -> Cluster:
    with caller.db.read() as session:
        return resolve(session, Cluster, cluster_ref, "cluster", field="cluster")


def probe_host(ctx: JobContext) -> dict[str, Any]:
    uri = parse_host_uri(f"host {ctx.params.get('uri')!s}", ctx.params.get("uri"))
    cluster = _cluster(ctx.caller, str(ctx.params.get("cluster") or ""))
    ctx.progress(10, f"connecting to {uri}")
    manager = ctx.hosts
    timeout = getattr(manager, "timeout", PROBE_TIMEOUT)
    # A connection of its own: probing leaves nothing behind in the manager.
    probe = HostConnection(uri, timeout=timeout, connect_timeout=timeout)
    try:
        try:
            facts = read_facts(probe)
        except HostUnavailable as exc:
            raise HostUnavailable(f"host {uri} is unreachable: {exc}") from None
    finally:
        probe.close()
    ctx.progress(80, f"checking {facts.driver} against cluster '{cluster.name}'")
    check_driver(uri, facts, cluster.hypervisor)
    spec = host_spec_from_facts(uri, facts)
    return {"facts": asdict(facts), "name": spec.name, "cluster": cluster.name}


def add_host(ctx: JobContext) -> dict[str, Any]:
    params = ctx.params
    uri = str(params.get("uri") or "")
    ctx.progress(10, f"connecting to {uri} and reading its facts")
    host = add_host_from_uri(
        ctx.caller,
        _manager(ctx),
        str(params.get("cluster") or ""),
        uri,
        name=params.get("name") or None,
        address=params.get("address") or None,
        tags=tuple(params.get("tags") or ()),
    )
    ctx.progress(100, f"host '{host.name}' added")
    return {"host": host.uuid, "name": host.name}


def reconnect_host(ctx: JobContext) -> dict[str, Any]:
    manager = _manager(ctx)
    host = topology.get_host(ctx.caller, ctx.resource_uuid or "")
    ctx.progress(10, f"closing the connection to {host.uri}")
    manager.forget(host.uri)
    ctx.progress(40, f"connecting to {host.uri}")
    hc = manager.for_host(host)
    try:
        hc.connect()  # the manager marks the host Up and resyncs it
    except HostUnavailable:
        hc.lose("reconnect requested by an operator failed")  # retry with backoff
        raise
    ctx.progress(100, "connected")
    return {"host": host.uuid, "status": topology.get_host(ctx.caller, host.uuid).status}


def remove_host(ctx: JobContext) -> dict[str, Any]:
    host = topology.get_host(ctx.caller, ctx.resource_uuid or "")
    ctx.progress(20, f"removing host '{host.name}' from the topology")
    topology.delete_host(ctx.caller, host.uuid)
    if ctx.hosts is not None:
        ctx.progress(80, f"closing the connection to {host.uri}")
        ctx.hosts.forget(host.uri)
    return {"removed": host.name, "uri": host.uri}


def _one_transaction(ctx: JobContext) -> str:
    return f"Nothing needed undoing: {ctx.job_type} writes in one transaction or not at all."


HOST_JOBS = {
    "ProbeHost": (probe_host, False),
    "AddHost": (add_host, True),
    "ReconnectHost": (reconnect_host, True),
    "RemoveHost": (remove_host, True),
}

for _job_type, (_run, _mutating) in HOST_JOBS.items():
    register_handler(_job_type, _run, recover=_one_transaction, mutating=_mutating)

# The maintenance drain registers its own job type (it runs compute's migrate and stop).
import engine.hosts.maintenance  # noqa: E402, F401


def submit_host_job(
    caller: Caller,
    job_type: str,
    *,
    host_ref: str | None = None,
    params: dict[str, Any] | None = None,
) -> Job:
    """Queue one of the host jobs; `host_ref` for those that act on an existing host."""
    if job_type not in HOST_JOBS:
        raise InvalidParameter(
            f"job type {job_type!r} is not a host job ({', '.join(HOST_JOBS)})", field="job_type"
        )
    params = dict(params or {})
    if host_ref is not None:
        host = topology.get_host(caller, host_ref)
        return submit_job(
            caller,
            job_type,
            resource_type="Host",
            resource_uuid=host.uuid,
            resource_name=host.name,
            params=params,
        )
    uri = parse_host_uri(f"host {params.get('uri')!s}", params.get("uri"))
    params["uri"] = uri
    with caller.db.read() as session:
        cluster = resolve(session, Cluster, str(params.get("cluster") or ""), "cluster",
                          field="cluster")  # fmt: skip
        known = session.exec(select(Host.name).where(Host.uri == uri)).first()
    if known is not None and job_type == "AddHost":
        raise AlreadyExists(
            f"host {uri}: URI is already in the topology as host '{known}'", field="uri"
        )
    params["cluster"] = cluster.uuid
    return submit_job(
        caller, job_type, resource_type="Host", resource_uuid=None, resource_name=uri,
        params=params,
    )  # fmt: skip
