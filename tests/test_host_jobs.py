"""Host jobs (probe, add, reconnect, remove) on test-driver hosts, and the jobs panel's
read service."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from console_support import build
from helpers import rejects
from hosts_helpers import SHAPE, node_uri
from sqlmodel import select

from engine import job_views
from engine.bootstrap import Cloud
from engine.errors import AlreadyExists, InvalidParameter, NotFound
from engine.hosts.handlers import submit_host_job
from engine.hosts.manager import HostManager
from engine.jobs import JobRunner, submit_job
from engine.models import Host, Job

GIB = 2**30


@pytest.fixture
def runner(cloud: Cloud) -> Iterator[JobRunner]:
    manager = HostManager(cloud.db)
    with JobRunner(cloud.db, workers=2, hosts=manager, poll_seconds=0.05) as running:
        yield running
    manager.close()


def _hosts(cloud: Cloud) -> dict[str, Host]:
    with cloud.db.read() as session:
        return {h.name: h for h in session.exec(select(Host))}


def test_bad_host_jobs_are_refused_before_anything_is_queued(cloud: Cloud) -> None:
    build(cloud.admin, hosts=1, vms=0)
    with rejects(cloud, InvalidParameter, "must end in /system or /session", field="uri"):
        submit_host_job(cloud.admin, "AddHost", params={"uri": "qemu:///", "cluster": "c1"})
    with rejects(cloud, AlreadyExists, "test:///nodes/h0.xml", "as host 'h0'", field="uri"):
        submit_host_job(
            cloud.admin, "AddHost", params={"uri": "test:///nodes/h0.xml", "cluster": "c1"}
        )
    with rejects(cloud, NotFound, "cluster", field="cluster"):
        submit_host_job(cloud.admin, "ProbeHost", params={"uri": "test:///default", "cluster": "x"})
    with rejects(cloud, InvalidParameter, "'StopVM' is not a host job", field="job_type"):
        submit_host_job(cloud.admin, "StopVM", host_ref="h0")


def test_probe_reads_the_facts_and_saves_nothing(
    cloud: Cloud, runner: JobRunner, tmp_path: Path
) -> None:
    build(cloud.admin, hosts=1, vms=0)
    uri = node_uri(tmp_path, "kvm-9")
    job = submit_host_job(cloud.admin, "ProbeHost", params={"uri": uri, "cluster": "c1"})
    done = runner.wait(job.uuid, raise_on_failure=True)
    view = job_views.job_view(cloud.admin, done.uuid)
    facts = view.result_data["facts"]
    assert view.result_data["name"] == "kvm-9" and view.result_data["cluster"] == "c1"
    assert facts["driver"] == "TEST" and facts["cpu_model"] == SHAPE.cpu_model
    assert facts["cpu_cores"] == 8 and facts["cpu_mhz"] == SHAPE.mhz
    assert set(_hosts(cloud)) == {"h0"}


def test_add_reconnect_and_remove_run_as_jobs(
    cloud: Cloud, runner: JobRunner, tmp_path: Path
) -> None:
    build(cloud.admin, hosts=1, vms=2)  # h0 carries the VMs
    uri = node_uri(tmp_path, "kvm-9")
    job = submit_host_job(cloud.admin, "AddHost", params={"uri": uri, "cluster": "c1"})
    runner.wait(job.uuid, raise_on_failure=True)
    added = _hosts(cloud)["kvm-9"]
    assert added.status == "Up" and added.cpu_cores == 8 and added.memory_bytes == 32 * GIB

    with cloud.db.write() as session:
        session.get(Host, added.id).status = "Disconnected"  # type: ignore[union-attr]
    job = submit_host_job(cloud.admin, "ReconnectHost", host_ref="kvm-9")
    done = runner.wait(job.uuid, raise_on_failure=True)
    assert _hosts(cloud)["kvm-9"].status == "Up"
    assert job_views.job_view(cloud.admin, done.uuid).result_data["status"] == "Up"

    refused = runner.wait(submit_host_job(cloud.admin, "RemoveHost", host_ref="h0").uuid)
    assert refused.state == "Failed"
    assert refused.error is not None and "host 'h0' still carries VMs" in refused.error
    assert "h0" in _hosts(cloud)
    removed = runner.wait(submit_host_job(cloud.admin, "RemoveHost", host_ref="kvm-9").uuid)
    assert removed.state == "Succeeded" and "kvm-9" not in _hosts(cloud)


def test_the_jobs_panel_lists_running_first_then_the_newest_finished(any_cloud: Cloud) -> None:
    cloud = any_cloud

    def job(name: str, state: str, **values: object) -> None:
        with cloud.db.write() as session:
            session.add(Job(job_type="Copy", resource_type="Template", resource_name=name,
                            state=state, **values))  # fmt: skip

    job("a", "Succeeded", result='{"copied": 3, "where": {"zone": "z1"}}')
    job("b", "Pending")
    job("c", "Failed", error="zone z9 has no image store; removed the partial copy")
    job("d", "Running", progress=40, progress_message="copying")
    job("e", "Cancelled", error="cancelled")
    panel = job_views.job_panel(cloud.admin, finished_limit=2)
    assert [v.resource_name for v in panel.active] == ["d", "b"]
    assert [v.resource_name for v in panel.finished] == ["e", "c"]  # newest first, 2 of 3
    assert (panel.active_total, panel.finished_total) == (2, 3)
    assert panel.finished[1].error == "zone z9 has no image store; removed the partial copy"
    everything = job_views.job_panel(cloud.admin)
    ok = everything.finished[-1]
    assert ok.result == 'copied=3, where={"zone":"z1"}'
    assert ok.result_data == {"copied": 3, "where": {"zone": "z1"}}
    with pytest.raises(InvalidParameter, match=r"active_limit 501 is outside 0\.\.500"):
        job_views.job_panel(cloud.admin, active_limit=501)


def test_a_job_submitted_elsewhere_is_shown_as_it_was_asked(cloud: Cloud) -> None:
    job = submit_job(cloud.admin, "Copy", resource_type="Template", resource_uuid=None,
                     resource_name="debian-12", params={"zone": "z1"})  # fmt: skip
    view = job_views.job_view(cloud.admin, job.uuid)
    assert view.state == "Pending" and view.active and view.subject == "Copy Template debian-12"
    assert view.username == "admin" and view.result == "" and view.result_data == {}
