"""Copying image data with its checksum verified on the way, and progress.

Data is written to `<dest>.part` and renamed into place only once the checksum matched, so
a file at its final path on secondary storage is always complete and verified; on any
failure (mismatch, I/O error, cancellation) the partial file is removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from engine.errors import InvalidParameter, StratusError

CHUNK_BYTES = 4 * 2**20
# CloudStack takes a plain hex digest (its length says which algorithm) or "{ALGO}hex";
# Stratus also accepts "algo:hex", which is how it stores checksums.
_ALGORITHMS = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128}
_BY_LENGTH = {32: "md5", 64: "sha256", 128: "sha512"}
_PREFIXED = re.compile(r"^(?:\{(?P<a>[A-Za-z0-9-]+)\}|(?P<b>[A-Za-z0-9-]+):)(?P<hex>.*)$")

Progress = Callable[[int, str], None]


class ChecksumMismatch(InvalidParameter):
    """The data read does not have the checksum the operator gave."""


class TransferCancelled(StratusError):
    """The copy was cancelled (its job was cancelled); the partial file was removed."""


@dataclass(frozen=True)
class Checksum:
    algorithm: str  # md5, sha1, sha256, sha512
    hexdigest: str  # lower case

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hexdigest}"


def parse_checksum(label: str, value: str | None) -> Checksum | None:
    """A checksum as CloudStack accepts it: plain hex, "{SHA-256}hex" or "sha256:hex"."""
    if value is None or not str(value).strip():
        return None
    text = str(value).strip()
    match = _PREFIXED.match(text)
    if match:
        algorithm = (match.group("a") or match.group("b")).lower().replace("-", "")
        digest = match.group("hex").strip().lower()
    else:
        digest = text.lower()
        algorithm = _BY_LENGTH.get(len(digest), "")
    expected = _ALGORITHMS.get(algorithm)
    if expected is None:
        raise InvalidParameter(
            f"{label}: checksum {text[:80]!r} is not md5, sha1, sha256 or sha512 "
            "(give plain hex, '{SHA-256}hex' or 'sha256:hex')",
            field="checksum",
        )
    if len(digest) != expected or not re.fullmatch(r"[0-9a-f]+", digest):
        raise InvalidParameter(
            f"{label}: checksum {text[:80]!r} is not {expected} hex digits of {algorithm}",
            field="checksum",
        )
    return Checksum(algorithm, digest)


@dataclass(frozen=True)
class CopyResult:
    path: Path
    size_bytes: int
    sha256: str  # always computed: it becomes the template's stored checksum


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def copy_verified(
    source: BinaryIO,
    dest: Path,
    *,
    label: str,
    expected: Checksum | None = None,
    total_bytes: int | None = None,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> CopyResult:
    """Copy `source` to `dest` through `<dest>.part`, hashing as it goes.

    Progress goes 0..100 (by bytes when `total_bytes` is known). The file is renamed into
    place only when `expected` (if given) matched; otherwise ChecksumMismatch, and nothing
    is left behind.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    sha256 = hashlib.sha256()
    other = (
        hashlib.new(expected.algorithm)
        if expected is not None and expected.algorithm != "sha256"
        else None
    )
    copied = 0
    shown = -1
    try:
        with part.open("wb") as out:
            while True:
                if cancelled is not None and cancelled():
                    raise TransferCancelled(f"{label}: cancelled after {copied} bytes")
                block = source.read(chunk_bytes)
                if not block:
                    break
                out.write(block)
                sha256.update(block)
                if other is not None:
                    other.update(block)
                copied += len(block)
                if progress is not None and total_bytes:
                    # 99 at most until the file is verified and in place.
                    percent = min(99, copied * 100 // total_bytes)
                    if percent != shown:
                        shown = percent
                        progress(percent, f"copied {copied // 2**20} of {total_bytes // 2**20} MiB")
            out.flush()
            os.fsync(out.fileno())
        got = (other or sha256).hexdigest()
        if expected is not None and got != expected.hexdigest:
            raise ChecksumMismatch(
                f"{label}: checksum mismatch: expected {expected}, the data has "
                f"{expected.algorithm}:{got}",
                field="checksum",
            )
        part.replace(dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
        raise
    if progress is not None:
        progress(100, f"copied {copied // 2**20} MiB, checksum verified")
    return CopyResult(path=dest, size_bytes=copied, sha256=sha256.hexdigest())


def file_sha256(path: Path, chunk_bytes: int = CHUNK_BYTES) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while block := source.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()
