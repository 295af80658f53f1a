"""Templates and ISOs on real secondary storage directories, with real qemu-img images."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import shutil
import subprocess
from pathlib import Path

import pytest
from sqlmodel import select

from engine import topology
from engine.bootstrap import Cloud
from engine.errors import (
    AlreadyExists,
    InUse,
    InvalidParameter,
    NotFound,
    PermissionDenied,
    StateConflict,
)
from engine.hosts.errors import ImageRefused
from engine.models import ImageStore, Template, TemplateState, TemplateStoreRef
from engine.storage import ostypes, templates
from engine.storage.transfer import ChecksumMismatch, parse_checksum
from tests.conftest import missing_part
from tests.helpers import events, make_zone, rejects
from tests.hosts_helpers import add_vm

MIB = 2**20


@pytest.fixture(autouse=True)
def qemu_img() -> None:
    if shutil.which("qemu-img") is None:
        missing_part("qemu-img not installed (qemu-utils); scripts/setup --test installs it")


def qcow2(path: Path, size: str = "16M", *options: str) -> Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", *options, str(path), size],
                   check=True)  # fmt: skip
    return path


def with_data(path: Path, size: int = 3 * MIB) -> Path:
    """A qcow2 of virtual size `size`, all written, so that copies move real bytes."""
    raw = path.with_suffix(".raw")
    raw.write_bytes(bytes(range(256)) * (size // 256))
    subprocess.run(
        ["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(path)], check=True
    )
    raw.unlink()
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def iso_bytes(size: int = 64 * 1024) -> bytes:
    data = bytearray(size)
    data[0x8000:0x8006] = b"\x01CD001"
    return bytes(data)


@pytest.fixture
def zones(cloud: Cloud, tmp_path: Path) -> tuple[Path, Path]:
    """Zones z1 and z2, each with a file image store (sec1, sec2)."""
    make_zone(cloud, "z1")
    make_zone(cloud, "z2")
    sec1, sec2 = tmp_path / "sec1", tmp_path / "sec2"
    topology.add_image_store(cloud.admin, "z1", "sec1", url=str(sec1))
    topology.add_image_store(cloud.admin, "z2", "sec2", url=f"file://{sec2}")
    return sec1, sec2


def store_row(cloud: Cloud, name: str) -> ImageStore:
    with cloud.db.read() as session:
        return session.exec(select(ImageStore).where(ImageStore.name == name)).one()


def test_os_types_are_shipped_and_checked() -> None:
    names = [t.name for t in ostypes.os_types()]
    assert "Other Linux (64-bit)" in names and "Ubuntu 22.04 LTS" in names
    assert len(names) == len(set(names))
    assert ostypes.check_os_type("t", "ubuntu 22.04 lts") == "Ubuntu 22.04 LTS"
    with pytest.raises(InvalidParameter, match="OS type 'BeOS' is not a known OS type"):
        ostypes.check_os_type("template 't'", "BeOS")


def test_checksums_as_cloudstack_accepts_them() -> None:
    digest = "a" * 64
    assert str(parse_checksum("t", digest)) == f"sha256:{digest}"
    assert str(parse_checksum("t", "{SHA-256}" + digest.upper())) == f"sha256:{digest}"
    assert str(parse_checksum("t", "b" * 32)) == "md5:" + "b" * 32
    assert str(parse_checksum("t", "md5:" + "b" * 32)) == "md5:" + "b" * 32
    assert parse_checksum("t", None) is None and parse_checksum("t", " ") is None
    with pytest.raises(InvalidParameter, match="not 64 hex digits of sha256"):
        parse_checksum("t", "sha256:1234")
    with pytest.raises(InvalidParameter, match="not md5, sha1, sha256 or sha512"):
        parse_checksum("t", "crc32:12345678")


def test_register_from_a_file_with_its_checksum(cloud, zones, tmp_path) -> None:
    sec1, _ = zones
    image = with_data(tmp_path / "tiny.qcow2")
    template = templates.register_template(
        cloud.admin,
        "tiny",
        zone="z1",
        source=image,
        os_type="Debian GNU/Linux 12 (64-bit)",
        checksum=f"sha256:{sha256(image)}",
    )
    assert template.state == TemplateState.READY
    assert template.size_bytes == 3 * MIB and template.checksum == f"sha256:{sha256(image)}"
    path, fmt = templates.template_path_in_zone(cloud.db, "tiny", "z1")
    assert fmt == "qcow2" and path.is_relative_to(sec1)
    assert path.read_bytes() == image.read_bytes()
    assert store_row(cloud, "sec1").used_bytes == image.stat().st_size
    assert events(cloud)[-1].event_type == "TEMPLATE.CREATE"
    # Not in z2 yet: compute gets a clear reason.
    with pytest.raises(NotFound, match="template 'tiny' is not on the secondary storage of zone"):
        templates.template_path_in_zone(cloud.db, "tiny", "z2")


def test_register_from_an_upload_stream_with_an_md5(cloud, zones, tmp_path) -> None:
    image = with_data(tmp_path / "up.qcow2")
    data = image.read_bytes()
    template = templates.register_template(
        cloud.admin,
        "uploaded",
        zone="z1",
        source=io.BytesIO(data),
        checksum=hashlib.md5(data).hexdigest(),
        size_bytes=len(data),
    )
    path, _ = templates.template_path_in_zone(cloud.db, template.uuid, "z1")
    assert path.read_bytes() == data


def test_a_checksum_mismatch_leaves_nothing(cloud, zones, tmp_path) -> None:
    sec1, _ = zones
    image = with_data(tmp_path / "tiny.qcow2")
    wrong = "0" * 64
    with rejects(cloud, ChecksumMismatch, "template 'tiny'", "checksum mismatch", wrong):
        templates.register_template(
            cloud.admin, "tiny", zone="z1", source=image, checksum=f"sha256:{wrong}"
        )
    assert not [p for p in (sec1 / "templates").rglob("*") if p.is_file()]


def test_unsafe_and_false_images_are_refused(cloud, zones, tmp_path) -> None:
    sec1, _ = zones
    base = qcow2(tmp_path / "base.qcow2")
    overlay = qcow2(tmp_path / "overlay.qcow2", "16M", "-F", "qcow2", "-b", str(base))
    with rejects(cloud, ImageRefused, "has a backing file"):
        templates.register_template(cloud.admin, "evil", zone="z1", source=overlay)
    data_file = qcow2(tmp_path / "df.qcow2", "16M", "-o", f"data_file={tmp_path / 'x.raw'}")
    with rejects(cloud, ImageRefused, "external data file"):
        templates.register_template(cloud.admin, "evil", zone="z1", source=data_file)
    raw = tmp_path / "plain.raw"
    raw.write_bytes(b"\0" * MIB)
    with rejects(cloud, ImageRefused, "not a valid qcow2 image"):
        templates.register_template(cloud.admin, "fake", zone="z1", source=raw, format="QCOW2")
    with rejects(cloud, InvalidParameter, "ISO 'fake-iso'", "not an ISO 9660 image"):
        templates.register_iso(cloud.admin, "fake-iso", zone="z1", source=raw)
    assert not [p for p in sec1.rglob("*") if p.is_file()]


def test_bad_input_changes_nothing(cloud, zones, tmp_path) -> None:
    image = qcow2(tmp_path / "t.qcow2")
    admin = cloud.admin
    with rejects(cloud, InvalidParameter, "template 't'", "format 'VMDK'", field="format"):
        templates.register_template(admin, "t", zone="z1", source=image, format="VMDK")
    with rejects(cloud, InvalidParameter, "OS type 'Plan 9'", field="os_type"):
        templates.register_template(admin, "t", zone="z1", source=image, os_type="Plan 9")
    with rejects(cloud, NotFound, "zone 'nowhere' does not exist", field="zone"):
        templates.register_template(admin, "t", zone="nowhere", source=image)
    with rejects(cloud, NotFound, "no such file", field="source"):
        templates.register_template(admin, "t", zone="z1", source=tmp_path / "missing.qcow2")
    with rejects(cloud, InvalidParameter, "not an absolute path", field="source"):
        templates.register_template(admin, "t", zone="z1", source="relative.qcow2")
    with rejects(cloud, InvalidParameter, "a name is required", field="name"):
        templates.register_template(admin, " ", zone="z1", source=image)
    tenant = dataclasses.replace(admin, is_admin=False)
    with rejects(cloud, PermissionDenied, "only an administrator may register from a file"):
        templates.register_template(tenant, "t", zone="z1", source=image)
    make_zone(cloud, "bare")
    with rejects(cloud, NotFound, "zone 'bare' has no writable secondary storage"):
        templates.register_template(admin, "t", zone="bare", source=image)
    templates.register_template(admin, "t", zone="z1", source=image)
    with rejects(cloud, AlreadyExists, "template 't'", "already taken", field="name"):
        templates.register_template(admin, "t", zone="z1", source=image)


def test_an_iso_is_registered_and_found(cloud, zones, tmp_path) -> None:
    iso = tmp_path / "boot.iso"
    iso.write_bytes(iso_bytes())
    row = templates.register_iso(cloud.admin, "boot", zone="z1", source=iso)
    assert row.format == "ISO" and row.size_bytes == len(iso_bytes())
    path, fmt = templates.template_path_in_zone(cloud.db, "boot", "z1")
    assert fmt == "iso" and path.name.endswith(".iso") and path.read_bytes() == iso_bytes()
    assert [t.name for t in templates.list_templates(cloud.admin, isos=True)] == ["boot"]
    assert templates.list_templates(cloud.admin, isos=False) == []


def test_copy_to_another_zone_reports_progress_and_copies_identical_bytes(
    cloud, zones, tmp_path
) -> None:
    _, sec2 = zones
    image = with_data(tmp_path / "big.qcow2", size=6 * MIB)
    templates.register_template(cloud.admin, "big", zone="z1", source=image)
    with cloud.db.write() as session:
        target = templates.prepare_template_copy(session, cloud.admin, "big", "z2")
    with (
        rejects(cloud, StateConflict, "template 'big' is already Downloading in zone 'z2'"),
        cloud.db.write() as session,
    ):
        templates.prepare_template_copy(session, cloud.admin, "big", "z2")
    seen: list[int] = []
    result = templates.run_template_copy(
        cloud.admin,
        target.template_uuid,
        target.store_uuid,
        progress=lambda p, _m: seen.append(p),
    )
    assert seen[-1] == 100 and seen == sorted(seen) and len(seen) > 2
    path, _ = templates.template_path_in_zone(cloud.db, "big", "z2")
    assert path.is_relative_to(sec2) and path.read_bytes() == image.read_bytes()
    assert result["bytes"] == image.stat().st_size
    assert store_row(cloud, "sec2").used_bytes == image.stat().st_size
    assert not list(sec2.rglob("*.part"))


def test_a_copy_that_fails_verification_removes_its_partial_file(cloud, zones, tmp_path) -> None:
    _, sec2 = zones
    image = with_data(tmp_path / "t.qcow2")
    template = templates.register_template(cloud.admin, "t", zone="z1", source=image)
    source, _ = templates.template_path_in_zone(cloud.db, "t", "z1")
    # The source copy rots on disk: the copy must not spread it.
    data = bytearray(source.read_bytes())
    data[-1] ^= 0xFF
    source.write_bytes(bytes(data))
    with cloud.db.write() as session:
        target = templates.prepare_template_copy(session, cloud.admin, "t", "z2")
    with pytest.raises(ChecksumMismatch, match="checksum mismatch"):
        templates.run_template_copy(cloud.admin, target.template_uuid, target.store_uuid)
    assert not [p for p in sec2.rglob("*") if p.is_file()]
    with cloud.db.read() as session:
        ref = session.exec(
            select(TemplateStoreRef).where(
                TemplateStoreRef.template_id == template.id,
                TemplateStoreRef.store_id == store_row(cloud, "sec2").id,
            )
        ).one()
    assert ref.state == TemplateState.ERROR and "checksum mismatch" in (ref.error or "")
    with pytest.raises(StateConflict, match="its copy there is Error"):
        templates.template_path_in_zone(cloud.db, "t", "z2")
    assert store_row(cloud, "sec2").used_bytes == 0


def test_delete_in_use_is_refused_then_files_and_rows_go(cloud, zones, tmp_path) -> None:
    image = qcow2(tmp_path / "t.qcow2")
    template = templates.register_template(cloud.admin, "t", zone="z1", source=image)
    path, _ = templates.template_path_in_zone(cloud.db, "t", "z1")
    world_host = _host_for_vm(cloud)
    vm = add_vm(cloud, world_host, "web-1", state="Stopped")
    with cloud.db.write() as session:
        row = session.get(type(vm), vm.id)
        row.template_id = template.id
        session.add(row)
    with rejects(cloud, InUse, "template 't' is in use by VM 'web-1'", field="template"):
        templates.delete_template(cloud.admin, "t")
    assert path.exists()
    with cloud.db.write() as session:
        row = session.get(type(vm), vm.id)
        row.state, row.removed = "Expunged", template.created
        session.add(row)
    templates.delete_template(cloud.admin, "t")
    assert not path.exists() and not path.parent.exists()
    assert store_row(cloud, "sec1").used_bytes == 0
    with cloud.db.read() as session:
        left = session.exec(select(Template).where(Template.uuid == template.uuid)).one()
        refs = session.exec(select(TemplateStoreRef)).all()
    assert left.removed is not None and refs == []  # kept: an expunged VM row points at it
    with pytest.raises(NotFound, match="was deleted"):
        templates.template_path_in_zone(cloud.db, template.uuid, "z1")
    # An unused template disappears entirely; its name can be used again.
    templates.register_template(cloud.admin, "u", zone="z1", source=image)
    templates.delete_template(cloud.admin, "u")
    templates.register_template(cloud.admin, "u", zone="z1", source=image)


def _host_for_vm(cloud: Cloud):
    from tests.helpers import host_spec, make_cluster, make_pod

    make_pod(cloud, "z1")
    make_cluster(cloud)
    return topology.add_host(cloud.admin, "c1", host_spec("h1", address="10.1.1.150"))


def test_a_cancelled_copy_leaves_no_partial_file(tmp_path) -> None:
    from engine.storage.transfer import TransferCancelled, copy_verified

    dest = tmp_path / "out" / "t.qcow2"
    calls = iter([False, True])
    with pytest.raises(TransferCancelled, match="cancelled after 1024 bytes"):
        copy_verified(
            io.BytesIO(b"x" * 4096), dest, label="t", chunk_bytes=1024,
            cancelled=lambda: next(calls),
        )  # fmt: skip
    assert list((tmp_path / "out").iterdir()) == []
