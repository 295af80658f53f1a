"""Storage work as real jobs (JobRunner): registration from a large file, copies between
zones with progress, and the recovery of a copy whose process died mid-way."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from sqlalchemy import update
from sqlmodel import col, select

from engine.errors import NotFound
from engine.jobs import JobRunner, get_job
from engine.models import Job, JobState, TemplateState, TemplateStoreRef, utcnow
from engine.storage import templates
from tests.helpers import rejects
from tests.test_storage_templates import qemu_img, store_row, with_data, zones  # noqa: F401


def test_register_a_large_file_and_copy_it_through_jobs(cloud, zones, tmp_path) -> None:  # noqa: F811
    _sec1, sec2 = zones
    image = with_data(tmp_path / "big.qcow2", size=8 * 2**20)
    with rejects(cloud, NotFound, "no such file", field="source"):
        templates.submit_register_template(
            cloud.admin, "big", zone="z1", path=str(tmp_path / "nope.qcow2")
        )
    with JobRunner(cloud.db, workers=2) as runner:
        job = templates.submit_register_template(
            cloud.admin, "big", zone="z1", path=str(image), os_type="Ubuntu 22.04 LTS"
        )
        done = runner.wait(job.uuid, timeout=120)
        assert done.state == JobState.SUCCEEDED, done.error
        assert json.loads(done.result or "{}")["template"] == job.resource_uuid
        assert templates.get_template(cloud.admin, "big").os_type == "Ubuntu 22.04 LTS"
        copy = templates.copy_template(cloud.admin, "big", "z2")
        assert copy.job_type == "CopyTemplate" and copy.resource_uuid == job.resource_uuid
        done = runner.wait(copy.uuid, timeout=120)
    assert done.state == JobState.SUCCEEDED, done.error
    assert done.progress == 100
    path, _ = templates.template_path_in_zone(cloud.db, "big", "z2")
    assert path.is_relative_to(sec2) and path.read_bytes() == image.read_bytes()
    copies = templates.template_copies(cloud.admin, "big")
    assert [ref.state for ref, _store in copies] == [TemplateState.READY] * 2


def test_a_copy_whose_process_died_is_recovered(cloud, zones, tmp_path) -> None:  # noqa: F811
    _sec1, sec2 = zones
    image = with_data(tmp_path / "t.qcow2")
    templates.register_template(cloud.admin, "t", zone="z1", source=image)
    job = templates.copy_template(cloud.admin, "t", "z2")  # queued: no runner yet
    # As if a process had started the copy and died: the job Running under a dead owner,
    # half a file on the destination store.
    with cloud.db.write() as session:
        session.execute(
            update(Job)
            .where(col(Job.uuid) == job.uuid)
            .values(
                state=JobState.RUNNING,
                owner="elsewhere:1:1",
                lease_expires=utcnow() - timedelta(seconds=5),
                started=utcnow(),
            )
        )
        ref = session.exec(
            select(TemplateStoreRef).where(TemplateStoreRef.store_id == store_row(cloud, "sec2").id)
        ).one()
    partial = Path(sec2 / (ref.path + ".part"))
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.write_bytes(b"half a template")
    with JobRunner(cloud.db, workers=1) as runner:
        assert [j.uuid for j in runner.recovered] == [job.uuid]
    failed = get_job(cloud.db, job.uuid)
    assert failed.state == JobState.FAILED
    assert "removed the partial copy on image store 'sec2'" in (failed.error or "")
    assert not partial.exists()
    with cloud.db.read() as session:
        ref = session.exec(
            select(TemplateStoreRef).where(TemplateStoreRef.store_id == store_row(cloud, "sec2").id)
        ).one()
    assert ref.state == TemplateState.ERROR and "interrupted" in (ref.error or "")
    # The copy can be asked for again, and now succeeds.
    with JobRunner(cloud.db, workers=1) as runner:
        again = templates.copy_template(cloud.admin, "t", "z2")
        assert runner.wait(again.uuid, timeout=120).state == JobState.SUCCEEDED
    path, _ = templates.template_path_in_zone(cloud.db, "t", "z2")
    assert path.read_bytes() == image.read_bytes()
