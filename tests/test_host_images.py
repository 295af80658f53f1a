"""Images entering the system (qemu-img inspection), secondary storage layout, host metrics."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import psutil
import pytest

from engine.errors import InvalidParameter, NotFound
from engine.hosts.errors import ImageRefused
from engine.hosts.images import ensure_secondary_layout, inspect_image
from engine.hosts.metrics import LocalMetrics
from tests.conftest import missing_part
from tests.hosts_helpers import wait_for

MIB = 2**20


@pytest.fixture(autouse=True)
def qemu_img() -> None:
    if shutil.which("qemu-img") is None:
        missing_part("qemu-img not installed (qemu-utils); scripts/setup --test installs it")


def _create(path: Path, size: str = "16M", *options: str, fmt: str = "qcow2") -> Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", fmt, *options, str(path), size], check=True)
    return path


def test_a_plain_qcow2_and_raw_image_are_accepted(tmp_path: Path) -> None:
    info = inspect_image(_create(tmp_path / "a.qcow2"), "qcow2")
    assert (info.format, info.virtual_size_bytes) == ("qcow2", 16 * MIB)
    raw = inspect_image(_create(tmp_path / "b.raw", "8M", fmt="raw"), "RAW")
    assert (raw.format, raw.virtual_size_bytes) == ("raw", 8 * MIB)


def test_a_qcow2_with_a_backing_file_is_refused(tmp_path: Path) -> None:
    base = _create(tmp_path / "base.qcow2")
    overlay = _create(tmp_path / "overlay.qcow2", "16M", "-F", "qcow2", "-b", str(base))
    with pytest.raises(ImageRefused, match=r"overlay.qcow2.*has a backing file \(.*base.qcow2\)"):
        inspect_image(overlay, "qcow2")


def test_a_qcow2_with_an_external_data_file_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "host-secrets.raw"
    image = _create(tmp_path / "df.qcow2", "16M", "-o", f"data_file={data}")
    with pytest.raises(ImageRefused, match=r"external data file \(.*host-secrets.raw\)"):
        inspect_image(image, "qcow2")


def test_the_declared_format_is_enforced_never_probed(tmp_path: Path) -> None:
    qcow2 = _create(tmp_path / "really.qcow2")
    # Read as raw it is a valid raw image: what a guest would see is the qcow2 bytes, not
    # the backing chain. Declared as qcow2, a raw file is refused.
    assert inspect_image(qcow2, "raw").format == "raw"
    raw = _create(tmp_path / "plain.raw", "4M", fmt="raw")
    with pytest.raises(ImageRefused, match="not a valid qcow2 image"):
        inspect_image(raw, "qcow2")
    with pytest.raises(InvalidParameter, match="format 'vmdk' is not qcow2 or raw"):
        inspect_image(raw, "vmdk")
    with pytest.raises(NotFound, match="no such file"):
        inspect_image(tmp_path / "nope.qcow2", "qcow2")


def test_secondary_storage_layout_is_created_once(tmp_path: Path) -> None:
    store = ensure_secondary_layout(tmp_path / "secondary")
    assert sorted(p.name for p in store.root.iterdir()) == ["isos", "snapshots", "templates"]
    (store.templates / "keep").write_text("x")
    again = ensure_secondary_layout(tmp_path / "secondary")
    assert (again.templates / "keep").read_text() == "x"
    assert again.template_path("t1", "QCOW2") == store.root / "templates/t1/t1.qcow2"
    with pytest.raises(InvalidParameter, match="absolute"):
        ensure_secondary_layout("relative/dir")


def test_local_metrics_are_sampled_with_history(tmp_path: Path) -> None:
    metrics = LocalMetrics(interval=0.05, history=3, disk_path=str(tmp_path))
    first = metrics.sample()
    assert first.net_rx_bytes_per_s is None  # no rate without an earlier sample
    second = metrics.sample()
    assert second.net_rx_bytes_per_s is not None and second.net_rx_bytes_per_s >= 0
    assert 0 <= second.cpu_percent <= 100
    assert second.memory_total_bytes == psutil.virtual_memory().total
    assert 0 < second.memory_used_bytes <= second.memory_total_bytes
    assert second.disk_total_bytes == psutil.disk_usage(str(tmp_path)).total
    metrics.start()
    try:
        # The background thread adds samples; the history keeps only the last three.
        wait_for("a background sample", lambda: metrics.latest() is not second)
        wait_for("more samples", lambda: metrics.history()[0] is not first)
    finally:
        metrics.stop()
    history = metrics.history()
    assert len(history) == 3  # bounded
    assert history[-1] == metrics.latest()
    assert [s.taken for s in history] == sorted(s.taken for s in history)


def test_only_a_local_host_has_live_metrics() -> None:
    from engine.hosts.manager import HostManager

    manager = HostManager(None)
    try:
        assert manager.live_metrics("test:///default") is None
        assert manager.live_metrics("qemu+ssh://root@kvm1/system") is None
        local = manager.live_metrics("qemu:///system")
        assert local is not None and local is manager.live_metrics("qemu:///system")
        sample = wait_for("a first sample", local.latest)
        assert sample.memory_total_bytes == psutil.virtual_memory().total
    finally:
        manager.close()
