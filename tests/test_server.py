"""The management server of one engine process: host connections, resync and jobs."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import update

from engine.bootstrap import Cloud
from engine.hosts.facts import add_host_from_uri
from engine.hosts.manager import HostManager
from engine.jobs import get_job, submit_job
from engine.models import Host, HostStatus, Job, JobState, VmState
from engine.server import ManagementServer
from tests.helpers import make_cluster, make_pod, make_zone
from tests.hosts_helpers import add_vm, host_row, node_uri, vm_row, wait_for


def test_a_server_connects_every_host_resyncs_and_recovers_jobs(
    cloud: Cloud, tmp_path: Path
) -> None:
    make_zone(cloud)
    make_pod(cloud)
    cluster = make_cluster(cloud)
    first = HostManager(cloud.db)
    try:
        up = add_host_from_uri(cloud.admin, first, cluster.uuid, node_uri(tmp_path, "kvm-1"))
    finally:
        first.close()
    add_vm(cloud, up, "vm-1", state=VmState.RUNNING, power_state="PowerOff")
    with cloud.db.write() as session:  # as a stopped engine leaves it
        session.execute(update(Host).values(status=HostStatus.DISCONNECTED))
    orphan = submit_job(
        cloud.admin, "RebootVM", resource_type="VirtualMachine", resource_uuid="vm-x"
    )
    with cloud.db.write() as session:
        session.execute(
            update(Job).where(Job.id == orphan.id).values(state=JobState.RUNNING, owner=None)
        )

    server = ManagementServer(cloud.db, workers=1, resync_seconds=3600)
    with server:
        assert server.status().hosts == 1 and server.status().recovered_jobs == 1
        wait_for("host Up", lambda: host_row(cloud, up.uuid).status == HostStatus.UP)
        # The simulated host got its Running VM back on connect, and the resync saw it on.
        wait_for("vm-1 PowerOn", lambda: vm_row(cloud, "vm-1").power_state == "PowerOn")
        (report,) = server.reconcile()
        assert report.missing == [] and report.evidence == [] and report.drift == []
    assert get_job(cloud.db, orphan.uuid).state == JobState.FAILED


def test_an_unreachable_host_is_marked_disconnected_not_fatal(cloud: Cloud, tmp_path: Path) -> None:
    make_zone(cloud)
    make_pod(cloud)
    cluster = make_cluster(cloud)
    first = HostManager(cloud.db)
    node = Path(node_uri(tmp_path, "kvm-2").removeprefix("test://"))
    try:
        host = add_host_from_uri(cloud.admin, first, cluster.uuid, f"test://{node}")
    finally:
        first.close()
    node.unlink()  # the host's node file is gone: libvirt cannot open it
    with ManagementServer(cloud.db, workers=1, resync_seconds=3600):
        wait_for(
            "host Disconnected",
            lambda: host_row(cloud, host.uuid).status == HostStatus.DISCONNECTED,
        )


def test_the_expunge_thread_expunges_vms_past_the_delay(cloud: Cloud, tmp_path: Path) -> None:
    from engine.compute import DeployRequest, deploy_vm, destroy_vm
    from engine.settings import update_setting
    from tests.compute_world import make_compute_world, vm_by_name

    make_compute_world(cloud, tmp_path)  # zone z1, test-driver hosts, template 'tiny'
    update_setting(cloud.admin, "expunge.delay", "0")
    with ManagementServer(cloud.db, workers=2, resync_seconds=3600, expunge_interval=1) as server:
        request = DeployRequest(
            "web", zone="z1", offering="tiny", template="tiny", networks=["guest"]
        )
        vm, job = deploy_vm(cloud.admin, request)
        server.runner.wait(job.uuid, raise_on_failure=True)
        server.runner.wait(destroy_vm(cloud.admin, vm.uuid).uuid, raise_on_failure=True)
        assert vm_by_name(cloud, "web").state == VmState.DESTROYED
        # Nobody asks for the expunge: the server's expunge thread queues it.
        wait_for("VM expunged", lambda: vm_by_name(cloud, "web").state == VmState.EXPUNGED)
