"""The domain XML builder: typed fields in, the same fields back, never injected markup."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import InvalidParameter
from engine.hosts.domain_xml import (
    METADATA_NS,
    DiskSpec,
    DomainSpec,
    NicSpec,
    build_domain_xml,
    clean_text,
    parse_domain_xml,
)

HOSTILE = ["<", ">", "&", "'", '"', "]]>", "<![CDATA[", "</name><evil/>", "&amp;", "\x01", "\x1b"]

# Text built from hostile fragments and anything else Unicode offers.
hostile_text = st.lists(st.one_of(st.sampled_from(HOSTILE), st.text(max_size=8)), max_size=12).map(
    "".join
)
# A domain name: no control characters and no '/' (refused, tested below), the rest goes.
name_text = (
    st.lists(st.one_of(st.sampled_from(HOSTILE[:9]), st.text(min_size=1, max_size=6)), min_size=1)
    .map("".join)
    .map(lambda s: "".join(ch for ch in s if ch >= " " and ch != "\x7f" and ch != "/"))
    .map(clean_text)
    .filter(lambda s: 0 < len(s) <= 64)
)
macs = st.lists(st.integers(0, 255), min_size=6, max_size=6).map(
    lambda b: ":".join(f"{x:02x}" for x in b)
)
paths = st.lists(
    st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), min_size=1, max_size=8),
    min_size=1,
    max_size=3,
).map(lambda parts: "/" + "/".join(parts))
disks = st.lists(
    st.builds(
        lambda i, fmt, path: DiskSpec(target=f"vd{chr(97 + i)}", format=fmt, path=path),
        st.integers(0, 0),
        st.sampled_from(["qcow2", "raw"]),
        paths.map(clean_text).filter(bool),
    ),
    max_size=1,
)
nics = st.lists(
    st.builds(NicSpec, bridge=st.from_regex(r"[a-z0-9_.-]{1,15}", fullmatch=True), mac=macs),
    max_size=3,
)


def _expected_elements(spec: DomainSpec) -> list[str]:
    tags = ["domain", "name", "uuid"]
    tags += ["description"] if spec.description else []
    tags += ["metadata", f"{{{METADATA_NS}}}vm", f"{{{METADATA_NS}}}uuid", "memory", "vcpu"]
    tags += ["os", "type", "boot", "features", "acpi", "apic"]
    tags += ["on_poweroff", "on_reboot", "on_crash", "devices"]
    for disk in spec.disks:
        tags += ["disk", "driver", "source", "target"] + (["readonly"] if disk.read_only else [])
    for _ in spec.nics:
        tags += ["interface", "mac", "source", "model"]
    tags += ["serial", "target", "console", "target"] if spec.serial_console else []
    tags += ["graphics", "listen"] if spec.vnc else []
    return tags


@settings(max_examples=300, deadline=None)
@given(
    name=name_text,
    description=hostile_text,
    vcpus=st.integers(1, 256),
    memory_mib=st.integers(1, 2**20),
    disks=disks,
    nics=nics,
)
def test_fields_round_trip_and_nothing_is_injected(
    name, description, vcpus, memory_mib, disks, nics
):
    domain_uuid, vm_uuid = str(uuid.uuid4()), str(uuid.uuid4())
    spec = DomainSpec(
        name=name,
        uuid=domain_uuid,
        vm_uuid=vm_uuid,
        vcpus=vcpus,
        memory_bytes=memory_mib * 2**20,
        description=description,
        disks=tuple(disks),
        nics=tuple(nics),
    )
    xml = build_domain_xml(spec)
    root = ET.fromstring(xml)  # well-formed whatever the input
    # Exactly the elements the builder writes, in order: no hostile string made one.
    assert [el.tag for el in root.iter()] == _expected_elements(
        DomainSpec(**{**spec.__dict__, "description": clean_text(description)})
    )
    back = parse_domain_xml(xml)
    assert back.name == name
    assert back.uuid == domain_uuid and back.vm_uuid == vm_uuid
    assert back.description == clean_text(description)
    assert (back.vcpus, back.memory_bytes) == (vcpus, memory_mib * 2**20)
    assert back.disks == spec.disks
    assert back.nics == spec.nics
    assert back.domain_type == "qemu" and back.serial_console and back.vnc
    # VNC never listens beyond the host's loopback.
    for listen in root.iter("listen"):
        assert listen.get("address") == "127.0.0.1"
    assert root.find("devices/graphics").get("listen") == "127.0.0.1"


def _spec(**kw: object) -> DomainSpec:
    u = str(uuid.uuid4())
    values: dict[str, object] = {
        "name": "vm",
        "uuid": u,
        "vm_uuid": u,
        "vcpus": 1,
        "memory_bytes": 2**27,
    }
    values.update(kw)
    return DomainSpec(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"name": "a\x00b"}, "control characters"),
        ({"name": "bad\nname"}, "control characters"),
        ({"name": "a/b"}, "'/'"),
        ({"name": ""}, "1 to 64"),
        ({"name": "x" * 65}, "1 to 64"),
        ({"uuid": "not-a-uuid"}, "is not a UUID"),
        ({"vcpus": 0}, "vcpus must be a positive"),
        ({"memory_bytes": 1024}, "at least 1 MiB"),
        ({"domain_type": "qemu'/><x"}, "domain_type"),
        ({"disks": (DiskSpec(target="vda", path="relative.qcow2"),)}, "not absolute"),
        ({"disks": (DiskSpec(target="vda", path="/x\x07y"),)}, "control characters"),
        ({"disks": (DiskSpec(target="vda", path="/a", pool="p", volume="v"),)}, "not both"),
        ({"disks": (DiskSpec(target="xvda", path="/a"),)}, "target"),
        ({"disks": (DiskSpec(target="vda", path="/a", format="vmdk"),)}, "not qcow2 or raw"),  # type: ignore[arg-type]
        ({"nics": (NicSpec(bridge="br0", mac="52:54:00:zz:00:01"),)}, "MAC"),
        ({"nics": (NicSpec(bridge="br0'><evil", mac="52:54:00:00:00:01"),)}, "bridge"),
        ({"nics": (NicSpec(bridge="a-very-long-bridge", mac="52:54:00:00:00:01"),)}, "bridge"),
    ],
)
def test_invalid_fields_are_refused_naming_the_rule(changes, fragment) -> None:
    with pytest.raises(InvalidParameter, match=fragment.replace("(", r"\(")):
        build_domain_xml(_spec(**changes))


def test_pool_volume_disks_and_control_characters_in_free_text() -> None:
    spec = _spec(
        description="line one\nline\x00two\x1b[31m",
        disks=(DiskSpec(target="vdb", pool="stratus-1", volume="v.qcow2", read_only=True),),
    )
    root = ET.fromstring(build_domain_xml(spec))
    assert root.findtext("description") == "line one\nlinetwo[31m"
    source = root.find("devices/disk/source")
    assert source.attrib == {"pool": "stratus-1", "volume": "v.qcow2"}
    assert root.find("devices/disk").get("type") == "volume"
    assert root.find("devices/disk/readonly") is not None
