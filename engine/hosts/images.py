"""Disk images entering the system, and the layout of secondary storage.

Every image is inspected with `qemu-img info -f <format>` (the format is given, never
probed: probing a raw image that looks like qcow2 is a classic escape) and refused if it
names a backing file or an external data file, either of which would let a guest read a
file on the host.

Secondary storage is a directory (local, or an NFS export mounted on the host) with one
sub-directory per kind of content.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from engine.errors import InvalidParameter, NotFound
from engine.hosts.errors import ImageRefused

IMAGE_FORMATS = ("qcow2", "raw")
QEMU_IMG_TIMEOUT = 60
SECONDARY_DIRS = ("templates", "isos", "snapshots")


@dataclass(frozen=True)
class ImageInfo:
    path: str
    format: str
    virtual_size_bytes: int
    actual_size_bytes: int


def inspect_image(path: str | Path, fmt: str) -> ImageInfo:
    """What the image is, or ImageRefused if it must not enter the system."""
    label = f"image {str(path)!r}"
    fmt = str(fmt).lower()
    if fmt not in IMAGE_FORMATS:
        raise InvalidParameter(f"{label}: format {fmt!r} is not qcow2 or raw", field="format")
    if not Path(path).is_file():
        raise NotFound(f"{label}: no such file", field="path")
    try:
        done = subprocess.run(
            ["qemu-img", "info", "-f", fmt, "--output=json", str(path)],
            capture_output=True,
            text=True,
            timeout=QEMU_IMG_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        raise ImageRefused(f"{label}: qemu-img is not installed (package qemu-utils)") from None
    except subprocess.TimeoutExpired:
        raise ImageRefused(
            f"{label}: qemu-img info did not finish in {QEMU_IMG_TIMEOUT} s"
        ) from None
    if done.returncode != 0:
        reason = " ".join(done.stderr.split()) or f"exit status {done.returncode}"
        raise ImageRefused(f"{label}: not a valid {fmt} image: {reason}", field="path")
    info = json.loads(done.stdout)
    if info.get("format") != fmt:
        raise ImageRefused(f"{label}: qemu-img reads it as {info.get('format')}, not {fmt}")
    backing = info.get("full-backing-filename") or info.get("backing-filename")
    if backing:
        raise ImageRefused(
            f"{label}: has a backing file ({backing}); only self-contained images are accepted",
            field="path",
        )
    specific = (info.get("format-specific") or {}).get("data") or {}
    if specific.get("data-file"):
        raise ImageRefused(
            f"{label}: has an external data file ({specific['data-file']}); only "
            "self-contained images are accepted",
            field="path",
        )
    return ImageInfo(
        path=str(path),
        format=fmt,
        virtual_size_bytes=int(info.get("virtual-size", 0)),
        actual_size_bytes=int(info.get("actual-size", 0)),
    )


@dataclass(frozen=True)
class SecondaryStorage:
    """The directories of one secondary storage root."""

    root: Path

    @property
    def templates(self) -> Path:
        return self.root / "templates"

    @property
    def isos(self) -> Path:
        return self.root / "isos"

    @property
    def snapshots(self) -> Path:
        return self.root / "snapshots"

    def template_path(self, template_uuid: str, fmt: str) -> Path:
        return self.templates / template_uuid / f"{template_uuid}.{fmt.lower()}"

    def iso_path(self, iso_uuid: str) -> Path:
        return self.isos / iso_uuid / f"{iso_uuid}.iso"

    def snapshot_path(self, volume_uuid: str, snapshot_uuid: str) -> Path:
        return self.snapshots / volume_uuid / f"{snapshot_uuid}.qcow2"


def ensure_secondary_layout(root: str | Path) -> SecondaryStorage:
    """Create (idempotently) the directories of a secondary storage root."""
    store = SecondaryStorage(Path(root))
    if not store.root.is_absolute():
        raise InvalidParameter(f"secondary storage {str(root)!r}: the path must be absolute")
    for name in SECONDARY_DIRS:
        (store.root / name).mkdir(parents=True, exist_ok=True)
    return store
