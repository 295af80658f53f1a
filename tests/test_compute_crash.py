"""Crash recovery: a real engine process deploys a VM on the real libvirtd and is killed -9
in the middle; the next job runner to start fails the deploy with a clear message, takes
back what the dead process made (domain, volume file, NIC, capacity) and leaves the VM in
Error."""

# ruff: noqa: F811  (pytest fixtures imported from compute_qemu are used as arguments)
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from compute_qemu import bridge, domain_on_qemu, qemu, workdir, world  # noqa: F401
from compute_world import (
    claims,
    host_usage,
    live_volumes,
    nics,
    pool_row,
    taken_addresses,
    vm_by_name,
)
from sqlmodel import select

from engine.hosts.manager import HostManager
from engine.jobs import JobRunner, get_job, list_jobs
from engine.models import Event, JobState, VmLifecycle, VmState

TESTS = Path(__file__).parent
REPO = TESTS.parent


def _deploy_and_block(url: str, step: str, ready: Path) -> subprocess.Popen:
    """An engine process that deploys 'crash' and blocks right after `step` is recorded,
    or, for step "copy", right after the root volume's file is made, before any record
    of it."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        sys.path.insert(0, {str(REPO)!r})
        from engine.bootstrap import open_cloud
        from engine.compute import DeployRequest, context, deploy_vm
        from engine.hosts.manager import HostManager
        from engine.jobs import JobRunner

        def block(name, vm):
            if name == {step!r}:
                Path({str(ready)!r}).write_text(name)
                time.sleep(600)

        context.STEP_HOOKS.append(block)
        if {step!r} == "copy":
            from engine.hosts import storage
            real = storage.create_volume_from_template

            def copy_then_block(*args, **kwargs):
                real(*args, **kwargs)
                block("copy", None)

            storage.create_volume_from_template = copy_then_block
        cloud = open_cloud({url!r}, migrate=False)
        JobRunner(cloud.db, workers=1, hosts=HostManager(cloud.db)).start()
        deploy_vm(cloud.admin, DeployRequest("crash", zone="z1", offering="tiny",
                                             template="tiny", networks=["guest"]))
        time.sleep(600)
        """
    )
    return _engine_process(script, ready)


def _engine_process(script: str, ready: Path) -> subprocess.Popen:
    """The script in a new Python process; its output goes to engine.log beside `ready`
    (shown if it never gets where it should)."""
    log = (ready.parent / "engine.log").open("w")
    # SIGUSR1 dumps every thread's stack into the log: where a stuck process is stuck.
    script = "import faulthandler, signal\nfaulthandler.register(signal.SIGUSR1)\n" + script
    return subprocess.Popen(
        [sys.executable, "-c", script], env=os.environ.copy(), stdout=log, stderr=log
    )


def _jobs_now(db) -> str:  # type: ignore[no-untyped-def]
    return "; ".join(
        f"{j.job_type} {j.state} {j.progress}% {j.progress_message!r} {j.error or ''}"
        for j in list_jobs(db)
    )


def _kill_when_ready(proc: subprocess.Popen, ready: Path, db, earlier: set[str]) -> None:  # type: ignore[no-untyped-def]
    """Wait until the engine process blocks at its step, then kill -9 it. A job of the
    process (not in `earlier`) that ends first fails the test at once, with its error."""
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert proc.poll() is None, (
                "the engine process died before its job got going: "
                + (ready.parent / "engine.log").read_text(errors="replace")[-3000:]
            )
            if any(j.finished is not None for j in list_jobs(db) if j.uuid not in earlier):
                raise AssertionError(f"a job ended before its step was reached: {_jobs_now(db)}")
            if time.monotonic() > deadline:
                os.kill(proc.pid, signal.SIGUSR1)
                time.sleep(1)
                output = (ready.parent / "engine.log").read_text(errors="replace")[-3000:]
                raise AssertionError(
                    f"the job never reached its step: {_jobs_now(db)}; engine output: {output}"
                )
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("step", ["nics", "copy", "volume", "defined"])
def test_a_deploy_killed_mid_way_is_recovered(world, workdir, step) -> None:
    cloud = world.cloud
    ready = workdir / "ready"
    proc = _deploy_and_block(cloud.db.url, step, ready)
    _kill_when_ready(proc, ready, cloud.db, set())

    vm = vm_by_name(cloud, "crash")
    assert vm.state == VmState.STARTING  # as the dead process left it
    assert len(claims(cloud)) == 1 and len(nics(cloud)) == 1  # it had got that far
    if step in ("copy", "volume", "defined"):
        (volume,) = live_volumes(cloud, vm.id)
        assert (volume.path is None) is (step == "copy")  # "copy": the file is not recorded
        assert len(list((workdir / "primary").glob("*.qcow2"))) == 1
    if step == "defined":
        assert domain_on_qemu(vm.instance_name) is not None

    manager = HostManager(cloud.db, timeout=60)
    try:
        with JobRunner(cloud.db, workers=1, hosts=manager) as runner:
            (job,) = list_jobs(cloud.db, resource_uuid=vm.uuid)
            assert [j.uuid for j in runner.recovered] == [job.uuid]
    finally:
        manager.close()
    done = get_job(cloud.db, job.uuid)
    assert done.state == JobState.FAILED
    assert done.error is not None
    assert "DeployVM of VirtualMachine 'crash' was interrupted" in done.error
    assert f":{proc.pid}:" in done.error
    assert "VM 'crash' is in Error; undone:" in done.error
    assert "capacity released" in done.error and "freed" in done.error

    after = vm_by_name(cloud, "crash")
    assert after.state == VmState.ERROR and after.host_id is None
    with cloud.db.read() as session:
        lifecycle = session.get(VmLifecycle, vm.id)
        assert lifecycle is not None
        last = "nics" if step == "copy" else step
        assert f"(last step: {last})" in lifecycle.state_reason
        failed_events = list(
            session.exec(
                select(Event).where(Event.event_type == "VM.CREATE", Event.state == "Failed")
            )
        )
    assert len(failed_events) == 1
    # nothing leaked: domain, volume file, volume row, NIC, address, claim, capacity
    assert domain_on_qemu(vm.instance_name) is None
    assert list((workdir / "primary").glob("*.qcow2")) == []
    assert live_volumes(cloud) == [] and nics(cloud) == [] and taken_addresses(cloud) == []
    assert claims(cloud) == [] and host_usage(cloud) == [(0, 0, 0, 0)]
    assert pool_row(cloud).allocated_bytes == 0


def _operate_and_block(  # type: ignore[no-untyped-def]
    url: str, operation: str, vm_uuid: str, step: str, ready: Path, **kwargs: object
):
    """An engine process that submits `operation` (start_vm / stop_vm) and blocks after
    `step`."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        sys.path.insert(0, {str(REPO)!r})
        from engine import compute
        from engine.bootstrap import open_cloud
        from engine.compute import context
        from engine.hosts.manager import HostManager
        from engine.jobs import JobRunner

        def block(name, vm):
            if name == {step!r}:
                Path({str(ready)!r}).write_text(name)
                time.sleep(600)

        context.STEP_HOOKS.append(block)
        cloud = open_cloud({url!r}, migrate=False)
        JobRunner(cloud.db, workers=1, hosts=HostManager(cloud.db)).start()
        compute.{operation}(cloud.admin, {vm_uuid!r}, **{kwargs!r})
        time.sleep(600)
        """
    )
    return _engine_process(script, ready)


@pytest.mark.parametrize(
    ("operation", "step", "state", "claim", "running"),
    [
        # killed with the domain started: the start is undone, the VM is Stopped
        ("start_vm", "started", VmState.STOPPED, "reserved", False),
        # killed with the domain off: the stop is finished, the VM is Stopped
        ("stop_vm", "off", VmState.STOPPED, "reserved", False),
    ],
)
def test_a_killed_start_or_stop_leaves_a_stable_vm(
    world, workdir, operation, step, state, claim, running
) -> None:
    from engine.compute import DeployRequest, deploy_vm, stop_vm

    cloud = world.cloud
    manager = HostManager(cloud.db, timeout=60)
    try:
        with JobRunner(cloud.db, workers=1, hosts=manager) as runner:
            vm, job = deploy_vm(
                cloud.admin,
                DeployRequest(
                    "op", zone="z1", offering="tiny", template="tiny", networks=["guest"]
                ),
            )
            runner.wait(job.uuid, timeout=180, raise_on_failure=True)
            if operation == "start_vm":
                runner.wait(stop_vm(cloud.admin, vm.uuid, forced=True).uuid, raise_on_failure=True)
        ready = workdir / "ready"
        kwargs = {"forced": True} if operation == "stop_vm" else {}
        earlier = {j.uuid for j in list_jobs(cloud.db)}
        proc = _operate_and_block(cloud.db.url, operation, vm.uuid, step, ready, **kwargs)
        _kill_when_ready(proc, ready, cloud.db, earlier)
        before = vm_by_name(cloud, "op")
        assert before.state in (VmState.STARTING, VmState.STOPPING)  # as the dead run left it

        with JobRunner(cloud.db, workers=1, hosts=manager) as runner:
            (recovered,) = runner.recovered
        done = get_job(cloud.db, recovered.uuid)
        assert done.state == JobState.FAILED and "was interrupted" in (done.error or "")
        after = vm_by_name(cloud, "op")
        assert after.state == state and after.host_id is None
        assert [c.state for c in claims(cloud)] == [claim]
        assert host_usage(cloud) == [(0, 500, 0, 64 * 2**20)]
        found = domain_on_qemu(after.instance_name)
        assert found is not None and (found[0] == "running") is running
        assert len(live_volumes(cloud, vm.id)) == 1 and len(nics(cloud)) == 1
    finally:
        manager.close()
