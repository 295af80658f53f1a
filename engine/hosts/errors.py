"""Typed errors of the hypervisor layer; every message names the host (URI) or the object."""

from __future__ import annotations

from engine.errors import InvalidParameter, StratusError


class HostUnavailable(StratusError):
    """The host's libvirt cannot be reached (connection refused, closed or lost)."""

    cs_error_code = 530


class HostTimeout(HostUnavailable):
    """A libvirt call did not answer in time; the host is treated as unreachable."""


class HypervisorError(StratusError):
    """libvirt refused an operation; the message carries libvirt's reason.

    `code` is libvirt's error code (libvirt.VIR_ERR_*), for callers that tolerate some.
    """

    def __init__(self, message: str, *, code: int | None = None, field: str | None = None):
        super().__init__(message, field=field)
        self.code = code


class ImageRefused(InvalidParameter):
    """An image that must not enter the system (wrong format, backing file, data file)."""
