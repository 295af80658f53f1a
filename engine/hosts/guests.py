"""What the VM lifecycle asks of a host beyond the domain calls of domains.py."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import libvirt

from engine.hosts.connections import HostConnection, is_simulated

_domain_types: dict[str, str] = {}


def guest_domain_type(hc: HostConnection) -> str:
    """The libvirt domain type guests get on this host: 'test' on a test-driver host,
    'kvm' where the host offers hardware virtualisation, else 'qemu' (software emulation).
    Read once per URI from the host's capabilities."""
    if is_simulated(hc.uri):
        return "test"
    known = _domain_types.get(hc.uri)
    if known is not None:
        return known

    def read(conn: libvirt.virConnect) -> str:
        caps = ET.fromstring(conn.getCapabilities())
        types = {d.get("type") for d in caps.iter("domain")}
        return "kvm" if "kvm" in types else "qemu"

    found = hc.call(read, what="read the host's capabilities")
    _domain_types[hc.uri] = found
    return found


def migration_flags(*, shared_dir_storage: bool) -> int:
    """libvirt flags of a live migration. A cluster's `dir` primary storage is a mount
    point every host of the cluster shares (CloudStack's SharedMountPoint), which libvirt
    cannot tell from a local disk and refuses as unsafe; Stratus vouches for it (disks
    run with cache='none', so no dirty host cache is left behind). NFS pools libvirt
    recognises itself."""
    from engine.hosts.domains import MIGRATE_FLAGS

    return MIGRATE_FLAGS | (libvirt.VIR_MIGRATE_UNSAFE if shared_dir_storage else 0)
