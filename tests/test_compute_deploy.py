"""Deploy through the job runner on test-driver hosts: what a deploy creates, what bad input
is refused before anything is written, and fault injection at every step: afterwards no
volume, address, claim or domain is left behind and the VM is in Error with the reason."""

from __future__ import annotations

import pytest
from compute_world import (
    ComputeWorld,
    claims,
    domains_everywhere,
    host_usage,
    live_volumes,
    nics,
    pool_files,
    pool_row,
    taken_addresses,
    vm_by_name,
)
from helpers import rejects
from hosts_helpers import MIB

from engine import topology
from engine.bootstrap import Cloud
from engine.compute import DeployRequest, context, deploy_vm
from engine.errors import AlreadyExists, InvalidParameter, NotFound
from engine.hosts import domains
from engine.hosts.errors import HypervisorError
from engine.hosts.manager import HostManager
from engine.jobs import get_job, job_steps
from engine.models import (
    ClaimState,
    JobState,
    PowerState,
    VmLifecycle,
    VmState,
    VolumeState,
)
from engine.settings import update_setting


def request(name: str = "web1", **kwargs: object) -> DeployRequest:
    values: dict = {"zone": "z1", "offering": "tiny", "template": "tiny", "networks": ["guest"]}
    values.update(kwargs)
    return DeployRequest(name, **values)


def reason_of(cloud: Cloud, vm_id: int) -> str:
    with cloud.db.read() as session:
        row = session.get(VmLifecycle, vm_id)
        return row.state_reason if row is not None else ""


def assert_nothing_left(world: ComputeWorld, manager: HostManager) -> None:
    cloud = world.cloud
    assert live_volumes(cloud) == []
    assert pool_files(manager, world.hosts, world.pool) == {h.name: [] for h in world.hosts}
    assert nics(cloud) == []
    assert taken_addresses(cloud) == []
    assert claims(cloud) == []
    assert host_usage(cloud) == [(0, 0, 0, 0)] * len(world.hosts)
    assert pool_row(cloud).allocated_bytes == 0
    assert domains_everywhere(manager, world.hosts) == {h.name: [] for h in world.hosts}


def test_deploy_runs_a_vm_and_takes_what_it_needs(world, manager, runner) -> None:
    cloud = world.cloud
    vm, job = deploy_vm(cloud.admin, request(disk_offerings=[], ip_address="10.50.0.15"))
    assert vm.state == VmState.STARTING and job.resource_uuid == vm.uuid
    done = runner.wait(job.uuid, raise_on_failure=True)
    assert done.state == JobState.SUCCEEDED and done.progress == 100

    vm = vm_by_name(cloud, "web1")
    assert vm.state == VmState.RUNNING and vm.power_state == PowerState.POWER_ON
    assert vm.instance_name == f"i-{vm.account_id}-{vm.id}-VM"
    host = next(h for h in world.hosts if h.id == vm.host_id)
    assert vm.last_host_id == host.id and vm.cluster_id == host.cluster_id
    # the domain runs on that host only, with our metadata UUID
    assert domains_everywhere(manager, world.hosts)[host.name] == [vm.instance_name]
    hc = manager.for_host(host)
    assert domains.domain_state(hc, vm.instance_name) == "running"
    # one root volume, Ready, on the pool, its file in the pool
    (root,) = live_volumes(cloud, vm.id)
    assert root.state == VolumeState.READY and root.pool_id == world.pool.id
    assert root.volume_type == "ROOT" and root.size_bytes == world.template.size_bytes
    assert pool_files(manager, world.hosts, world.pool)[host.name] == [root.path]
    # the fixed address on a default NIC
    (nic,) = nics(cloud)
    assert (nic.vm_id, nic.address, nic.is_default) == (vm.id, "10.50.0.15", True)
    assert taken_addresses(cloud) == ["10.50.0.15"]
    # capacity: the host's used share, the claim, the pool's allocation
    (claim,) = claims(cloud)
    assert claim.vm_id == vm.id and claim.state == ClaimState.USED
    usage = dict(zip([h.name for h in world.hosts], host_usage(cloud), strict=True))
    assert usage[host.name] == (500, 0, 64 * MIB, 0)
    assert pool_row(cloud).allocated_bytes == world.template.size_bytes
    # what it did, step by step, and why it went where it went
    steps = [s for s, _d in job_steps(cloud.db, done.id)]
    assert steps == ["placed", "nics", "volume", "defined", "started"]
    assert "2 of 2 hosts fit" in reason_placement(cloud, vm.id)


def reason_placement(cloud: Cloud, vm_id: int) -> str:
    with cloud.db.read() as session:
        row = session.get(VmLifecycle, vm_id)
        assert row is not None
        return row.placement_summary


def test_data_disks_come_from_disk_offerings(world, manager, runner) -> None:
    from engine import offerings

    offerings.create_disk_offering(world.cloud.admin, "data-1g", disk_size_bytes=2**30)
    vm, job = deploy_vm(world.cloud.admin, request(disk_offerings=["data-1g"]))
    runner.wait(job.uuid, raise_on_failure=True)
    volumes = sorted(live_volumes(world.cloud, vm.id), key=lambda v: v.device_id or 0)
    assert [(v.volume_type, v.size_bytes, v.state) for v in volumes] == [
        ("ROOT", world.template.size_bytes, VolumeState.READY),
        ("DATADISK", 2**30, VolumeState.READY),
    ]
    assert pool_row(world.cloud).allocated_bytes == world.template.size_bytes + 2**30


@pytest.mark.parametrize(
    ("change", "error", "fragment", "field"),
    [
        ({"name": "bad_name"}, InvalidParameter, "not a valid hostname", "name"),
        ({"offering": "huge"}, NotFound, "huge", "offering"),
        ({"template": "nope"}, NotFound, "nope", "template"),
        ({"networks": []}, InvalidParameter, "name at least one guest network", "networks"),
        ({"networks": ["guest", "guest"]}, InvalidParameter, "named twice", "networks"),
        ({"ip_address": "10.50.0.300"}, InvalidParameter, "not a valid IPv4", "ip_address"),
    ],
)
def test_bad_deploy_requests_change_nothing(world, change, error, fragment, field) -> None:
    with rejects(world.cloud, error, fragment, field=field):
        deploy_vm(world.cloud.admin, request(**change))


def test_a_template_not_ready_in_the_zone_is_refused(world, cloud) -> None:
    from helpers import set_columns

    from engine.models import Template

    set_columns(cloud, Template, world.template.uuid, state="Downloading")
    with rejects(cloud, InvalidParameter, "template 'tiny' is Downloading", field="template"):
        deploy_vm(cloud.admin, request())


def test_a_bad_instance_name_setting_is_refused(world, cloud) -> None:
    update_setting(cloud.admin, "instance.name", "has space")
    with rejects(cloud, InvalidParameter, "setting 'instance.name' is 'has space'"):
        deploy_vm(cloud.admin, request())
    update_setting(cloud.admin, "instance.name", "Lab7")
    vm, _job = deploy_vm(cloud.admin, request())
    assert vm.instance_name == f"i-{vm.account_id}-{vm.id}-Lab7"


def test_a_taken_name_is_refused(world, runner) -> None:
    _vm, job = deploy_vm(world.cloud.admin, request())
    runner.wait(job.uuid, raise_on_failure=True)
    with rejects(world.cloud, AlreadyExists, "already has a VM of that name", field="name"):
        deploy_vm(world.cloud.admin, request())


def _fail_at(step: str):  # type: ignore[no-untyped-def]
    def hook(name: str, vm: object) -> None:
        if name == step:
            raise HypervisorError(f"injected failure after {step}")

    return hook


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("placed", "injected failure after placed"),
        ("nics", "injected failure after nics"),
        ("volume", "injected failure after volume"),
        ("define", "define refused"),
        ("start", "start refused"),
    ],
)
def test_a_failed_deploy_step_leaves_nothing_behind(
    world, manager, runner, monkeypatch, fault, expected
) -> None:
    cloud = world.cloud
    if fault == "define":

        def refuse_define(hc, xml):  # type: ignore[no-untyped-def]
            raise HypervisorError("define refused (injected)")

        monkeypatch.setattr(domains, "define_domain", refuse_define)
    elif fault == "start":
        # Every start fails: the deploy retries on the other host, then gives up.
        def refuse_start(hc, name):  # type: ignore[no-untyped-def]
            raise HypervisorError(f"start refused on {hc.host_name} (injected)")

        monkeypatch.setattr(domains, "start_domain", refuse_start)
    else:
        monkeypatch.setattr(context, "STEP_HOOKS", [_fail_at(fault)])
    vm, job = deploy_vm(cloud.admin, request(disk_offerings=[], ip_address="10.50.0.12"))
    done = runner.wait(job.uuid)
    assert done.state == JobState.FAILED
    assert expected in (done.error or "")
    assert "undone:" in (done.error or "")
    vm = vm_by_name(cloud, "web1")
    assert vm.state == VmState.ERROR and vm.host_id is None
    assert expected in reason_of(cloud, vm.id)  # type: ignore[arg-type]
    assert_nothing_left(world, manager)
    if fault == "start":
        assert "start failed on host" in (done.error or "")
        assert "no other host" in (done.error or "")
        assert [s for s, _ in job_steps(cloud.db, done.id)].count("retry") == 2


def test_a_failed_start_is_retried_on_another_host(world, manager, runner, monkeypatch) -> None:
    cloud = world.cloud
    real_start = domains.start_domain
    refused: list[str] = []

    def first_host_refuses(hc, name):  # type: ignore[no-untyped-def]
        if not refused:
            refused.append(hc.host_name)
            raise HypervisorError("no room for that guest (injected)")
        return real_start(hc, name)

    monkeypatch.setattr(domains, "start_domain", first_host_refuses)
    vm, job = deploy_vm(cloud.admin, request())
    done = runner.wait(job.uuid, raise_on_failure=True)
    assert done.result is not None and '"retries": 1' in done.result
    vm = vm_by_name(cloud, "web1")
    (bad,) = refused
    good = next(h for h in world.hosts if h.name != bad)
    assert vm.state == VmState.RUNNING and vm.host_id == good.id
    # nothing of the first attempt is left on the host that refused
    assert domains_everywhere(manager, world.hosts) == {bad: [], good.name: [vm.instance_name]}
    files = pool_files(manager, world.hosts, world.pool)
    assert files[bad] == [] and len(files[good.name]) == 1
    assert len(claims(cloud)) == 1 and len(live_volumes(cloud)) == 1 and len(nics(cloud)) == 1
    usage = dict(zip([h.name for h in world.hosts], host_usage(cloud), strict=True))
    assert usage[bad] == (0, 0, 0, 0) and usage[good.name] == (500, 0, 64 * MIB, 0)


def test_start_retry_zero_gives_up_after_one_host(world, manager, runner, monkeypatch) -> None:
    update_setting(world.cloud.admin, "start.retry", "0")

    def refuse_start(hc, name):  # type: ignore[no-untyped-def]
        raise HypervisorError("start refused (injected)")

    monkeypatch.setattr(domains, "start_domain", refuse_start)
    _vm, job = deploy_vm(world.cloud.admin, request())
    done = runner.wait(job.uuid)
    assert done.state == JobState.FAILED
    assert "start.retry (0) exhausted" in (done.error or "")
    assert [s for s, _ in job_steps(world.cloud.db, done.id)].count("retry") == 1
    assert_nothing_left(world, manager)


def test_an_error_vm_is_expunged_and_its_name_is_free_again(world, manager, runner) -> None:
    from engine.compute import destroy_vm

    context.STEP_HOOKS.append(_fail_at("nics"))
    try:
        vm, job = deploy_vm(world.cloud.admin, request())
        assert runner.wait(job.uuid).state == JobState.FAILED
    finally:
        context.STEP_HOOKS.clear()
    done = runner.wait(destroy_vm(world.cloud.admin, vm.uuid).uuid, raise_on_failure=True)
    assert done.state == JobState.SUCCEEDED
    gone = vm_by_name(world.cloud, "web1")
    assert gone.state == VmState.EXPUNGED and gone.removed is not None
    _vm2, job2 = deploy_vm(world.cloud.admin, request())
    assert runner.wait(job2.uuid).state == JobState.SUCCEEDED
    assert get_job(world.cloud.db, job2.uuid).error is None


def test_no_host_fits_explains_why(world, manager, runner) -> None:
    for host in world.hosts:
        topology.disable_host(world.cloud.admin, host.uuid)
    _vm, job = deploy_vm(world.cloud.admin, request())
    done = runner.wait(job.uuid)
    assert done.state == JobState.FAILED
    assert "0 of 2 hosts fit" in (done.error or "")
    assert_nothing_left(world, manager)


def test_a_cancelled_deploy_undoes_what_it_did(world, manager, runner, monkeypatch) -> None:
    from engine.jobs import cancel_job, list_jobs

    cloud = world.cloud

    def cancel_after_placement(step: str, vm) -> None:  # type: ignore[no-untyped-def]
        if step == "placed":
            (job,) = list_jobs(cloud.db, resource_uuid=vm.uuid)
            cancel_job(cloud.admin, job.uuid)

    monkeypatch.setattr(context, "STEP_HOOKS", [cancel_after_placement])
    vm, job = deploy_vm(cloud.admin, request())
    done = runner.wait(job.uuid)
    assert done.state in (JobState.FAILED, JobState.CANCELLED)
    assert "cancelled" in (done.error or "")
    assert vm_by_name(cloud, "web1").state == VmState.ERROR
    assert "cancelled" in reason_of(cloud, vm.id)  # type: ignore[arg-type]
    assert_nothing_left(world, manager)


def test_a_basic_zone_vm_gets_an_address_of_its_pod(cloud, tmp_path, manager, runner) -> None:
    """Basic zone: no network is named; the NIC comes from the guest range of the pod
    placement chose (so NICs are given after placement)."""
    from compute_world import make_template
    from hosts_helpers import node_uri

    from engine import offerings
    from engine.ipam.networks import add_pod_guest_range

    admin = cloud.admin
    topology.create_zone(admin, "b1", dns1="8.8.8.8", network_type="Basic")
    topology.create_pod(
        admin,
        "b1",
        "pod-b",
        gateway="10.7.0.1",
        netmask="255.255.255.0",
        start_ip="10.7.0.10",
        end_ip="10.7.0.20",
    )
    add_pod_guest_range(
        admin,
        "pod-b",
        gateway="10.7.0.1",
        netmask="255.255.255.0",
        start_ip="10.7.0.100",
        end_ip="10.7.0.110",
    )
    cluster = topology.create_cluster(admin, "pod-b", "cb")
    topology.add_hosts(
        admin,
        cluster.uuid,
        [
            topology.HostSpec(
                name="hb",
                uri=node_uri(tmp_path, "hb"),
                cpu_cores=8,
                cpu_mhz=2000,
                memory_bytes=2**34,
            )
        ],
    )
    (tmp_path / "pb").mkdir()
    topology.create_storage_pool(
        admin, "pb", path=str(tmp_path / "pb"), cluster_ref=cluster.uuid, capacity_bytes=2**36
    )
    (tmp_path / "sb").mkdir()
    store = topology.add_image_store(admin, "b1", "sb", url=str(tmp_path / "sb"))
    make_template(cloud, store, tmp_path / "sb" / "t")
    offerings.create_service_offering(
        admin, "tiny", cpu_count=1, cpu_mhz=500, memory_bytes=64 * MIB
    )
    vm, job = deploy_vm(admin, DeployRequest("basic1", zone="b1", offering="tiny", template="tiny"))
    runner.wait(job.uuid, raise_on_failure=True)
    (nic,) = nics(cloud)
    assert nic.vm_id == vm.id and nic.address == "10.7.0.100"
    assert vm_by_name(cloud, "basic1").state == VmState.RUNNING
