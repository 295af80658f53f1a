"""Input rules shared by the services. Each check names the object (`label`) and the rule.

`label` reads like "pod 'rack-2'" and `field` is the parameter at fault, so a form can put
the message next to the right input.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from engine.errors import InvalidParameter

MAX_NAME = 255
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$")

LOCAL_QEMU_SCHEMES = {"qemu", "qemu+unix"}
REMOTE_QEMU_SCHEMES = {"qemu+ssh", "qemu+tcp", "qemu+tls", "qemu+libssh", "qemu+libssh2"}


def check_name(label: str, name: object, *, field: str = "name") -> str:
    """A stripped, printable name of at most 255 characters.

    `label` reads "<kind> '<name>'"; when the name itself is bad the message shows it
    only as a short escaped excerpt, so no control character reaches a terminal.
    """
    if not isinstance(name, str) or not name.strip():
        raise InvalidParameter(f"{label}: a name is required", field=field)
    name = name.strip()
    excerpt = repr(name[:32]) + ("…" if len(name) > 32 else "")
    if name in label:  # the label quotes the bad name itself: show the escaped excerpt
        label = label.split(" '", 1)[0] + " " + excerpt
    return check_text(label, name, field=field, limit=MAX_NAME)


def check_text(label: str, text: str | None, *, field: str, limit: int = 1024) -> str:
    text = (text or "").strip()
    if len(text) > limit:
        raise InvalidParameter(
            f"{label}: {field} is {len(text)} characters long, the limit is {limit}",
            field=field,
        )
    if _CONTROL.search(text):
        raise InvalidParameter(f"{label}: {field} contains control characters", field=field)
    return text


def parse_ipv4(label: str, value: object, *, field: str, what: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(str(value).strip())
    except ValueError:
        raise InvalidParameter(
            f"{label}: {what} {value!r} is not a valid IPv4 address", field=field
        ) from None


def parse_ip(label: str, value: object, *, field: str, what: str) -> ipaddress._BaseAddress:
    try:
        return ipaddress.ip_address(str(value).strip())
    except ValueError:
        raise InvalidParameter(
            f"{label}: {what} {value!r} is not a valid IP address", field=field
        ) from None


def parse_netmask(label: str, value: object, *, field: str = "netmask") -> int:
    """A dotted netmask (255.255.255.0) or a prefix length (24); returns the prefix length."""
    text = str(value).strip().lstrip("/")
    try:
        if text.isdigit():
            prefix = int(text)
            if not 0 <= prefix <= 32:
                raise ValueError
            return prefix
        return ipaddress.IPv4Network(f"0.0.0.0/{text}").prefixlen
    except ValueError:
        raise InvalidParameter(
            f"{label}: netmask {value!r} is not a valid IPv4 netmask", field=field
        ) from None


def parse_cidr(label: str, value: object, *, field: str) -> ipaddress.IPv4Network:
    """A network in CIDR form; host bits must be zero (10.1.0.0/16, not 10.1.2.3/16)."""
    text = str(value).strip()
    if "/" not in text:
        raise InvalidParameter(
            f"{label}: {field} {value!r} is not in CIDR form (e.g. 10.1.0.0/16)", field=field
        )
    try:
        return ipaddress.IPv4Network(text, strict=True)
    except ValueError as exc:
        reason = "has host bits set" if "host bits" in str(exc) else "is not a valid IPv4 CIDR"
        raise InvalidParameter(f"{label}: {field} {value!r} {reason}", field=field) from None


def check_tags(label: str, tags: Iterable[str] | str | None, *, field: str = "tags") -> list[str]:
    """Normalise tags: a list or a comma-separated string → sorted, unique, validated."""
    if tags is None:
        return []
    items = tags.split(",") if isinstance(tags, str) else list(tags)
    result = set()
    for tag in items:
        tag = str(tag).strip()
        if not tag:
            continue
        if not _TAG.match(tag):
            raise InvalidParameter(
                f"{label}: tag {tag!r} may hold only letters, digits, '_', '.', ':' and '-' "
                "(at most 63, starting with a letter or digit)",
                field=field,
            )
        result.add(tag)
    return sorted(result)


def check_factor(label: str, value: float | None, *, field: str, what: str) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidParameter(f"{label}: {what} {value!r} is not a number", field=field) from None
    if not number >= 1.0 or number != number or number == float("inf"):
        raise InvalidParameter(f"{label}: {what} must be at least 1.0, got {value}", field=field)
    return number


def check_threshold(label: str, value: float | None, *, field: str, what: str) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidParameter(f"{label}: {what} {value!r} is not a number", field=field) from None
    if not 0.0 < number <= 1.0:
        raise InvalidParameter(
            f"{label}: {what} must be above 0 and at most 1, got {value}", field=field
        )
    return number


def check_count(label: str, value: object, *, field: str, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(str(value).strip())
        except ValueError:
            raise InvalidParameter(
                f"{label}: {what} {value!r} is not a whole number", field=field
            ) from None
    if value < minimum:
        raise InvalidParameter(
            f"{label}: {what} must be at least {minimum}, got {value}", field=field
        )
    return value


def parse_host_uri(label: str, uri: object, *, field: str = "uri") -> str:
    """A libvirt URI Stratus can manage: qemu (local or remote) or the test driver."""
    text = str(uri or "").strip()
    if not text:
        raise InvalidParameter(f"{label}: a libvirt URI is required", field=field)
    if _CONTROL.search(text) or " " in text:
        raise InvalidParameter(
            f"{label}: URI {text!r} contains spaces or control characters", field=field
        )
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme == "test":
        if parts.netloc or not parts.path or parts.path == "/":
            raise InvalidParameter(
                f"{label}: URI {text!r} must name a test-driver node file "
                "(test:///path/to/node.xml or test:///default)",
                field=field,
            )
        return text
    if scheme in LOCAL_QEMU_SCHEMES | REMOTE_QEMU_SCHEMES:
        if parts.path not in {"/system", "/session"}:
            raise InvalidParameter(
                f"{label}: URI {text!r} must end in /system or /session "
                "(e.g. qemu:///system or qemu+ssh://root@kvm1/system)",
                field=field,
            )
        if scheme in REMOTE_QEMU_SCHEMES and not parts.hostname:
            raise InvalidParameter(
                f"{label}: URI {text!r} uses a remote transport but names no host", field=field
            )
        if scheme in LOCAL_QEMU_SCHEMES and parts.netloc:
            raise InvalidParameter(
                f"{label}: URI {text!r} is a local transport and must not name a host "
                f"(use qemu+ssh://{parts.netloc}/system)",
                field=field,
            )
        try:
            _ = parts.port
        except ValueError:
            raise InvalidParameter(
                f"{label}: URI {text!r} has an invalid port", field=field
            ) from None
        return text
    raise InvalidParameter(
        f"{label}: URI {text!r} has scheme {parts.scheme or '(none)'!r}; KVM hosts use "
        "qemu://, qemu+ssh://, qemu+tcp://, qemu+tls:// or test:///",
        field=field,
    )
