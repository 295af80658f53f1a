"""A VM's libvirt domain, built from its database rows (offering sizes, volumes, NICs)."""

from __future__ import annotations

from sqlmodel import Session, col, select

from engine.hosts.domain_xml import DiskSpec, DomainSpec, NicSpec, build_domain_xml
from engine.models import (
    GuestNetwork,
    ImageStore,
    Nic,
    StoragePool,
    TemplateState,
    TemplateStoreRef,
    VirtualMachine,
    Volume,
)
from engine.storage import disk_target, stores

# The bridge of networks without a VLAN/VXLAN id (Basic zones, untagged shared networks):
# what `stratus init --all-in-one` creates.
DEFAULT_BRIDGE = "cloudbr0"


def network_bridge(network: GuestNetwork) -> str:
    """The host bridge a NIC on `network` plugs into: one per VNI (brvx<vni>), else the
    default guest bridge."""
    return f"brvx{network.vni}" if network.vni is not None else DEFAULT_BRIDGE


def attached_volumes(session: Session, vm: VirtualMachine) -> list[tuple[Volume, StoragePool]]:
    """The VM's live volumes that exist on a pool, root first."""
    rows = session.exec(
        select(Volume, StoragePool)
        .join(StoragePool, col(StoragePool.id) == Volume.pool_id)
        .where(
            Volume.vm_id == vm.id,
            col(Volume.removed).is_(None),
            col(Volume.path).is_not(None),
        )
        .order_by(col(Volume.device_id), col(Volume.id))
    )
    return list(rows)


def iso_file(session: Session, vm: VirtualMachine) -> str | None:
    """The file of the VM's attached ISO on its zone's secondary storage (its Ready copy),
    None when it has none. Attaching checked the copy; deleting an ISO in use is refused."""
    if vm.iso_id is None:
        return None
    row = session.exec(
        select(TemplateStoreRef, ImageStore)
        .join(ImageStore, col(ImageStore.id) == TemplateStoreRef.store_id)
        .where(
            TemplateStoreRef.template_id == vm.iso_id,
            ImageStore.zone_id == vm.zone_id,
            TemplateStoreRef.state == TemplateState.READY,
        )
        .order_by(col(ImageStore.id))
    ).first()
    return str(stores.absolute(row[1], row[0].path)) if row is not None else None


def domain_spec(session: Session, vm: VirtualMachine, domain_type: str) -> DomainSpec:
    # Targets as storage gives them: the root disk on virtio (vda), data disks on SCSI by
    # device id (sdb, sdc ...), so a disk hot-plugged while running keeps its name here.
    disks = tuple(
        DiskSpec(
            target=disk_target(volume.volume_type, volume.device_id or 0),
            format="raw" if volume.format.lower() == "raw" else "qcow2",
            pool=pool.libvirt_pool_name,
            volume=volume.path,
        )
        for volume, pool in attached_volumes(session, vm)
    )
    nics = tuple(
        NicSpec(bridge=network_bridge(network), mac=nic.mac)
        for nic, network in session.exec(
            select(Nic, GuestNetwork)
            .join(GuestNetwork, col(GuestNetwork.id) == Nic.network_id)
            .where(Nic.vm_id == vm.id)
            .order_by(col(Nic.is_default).desc(), col(Nic.id))
        )
    )
    return DomainSpec(
        name=vm.instance_name,
        uuid=vm.uuid,
        vm_uuid=vm.uuid,
        vcpus=vm.cpu_count,
        memory_bytes=vm.memory_bytes,
        description=vm.display_name or vm.name,
        disks=disks,
        nics=nics,
        domain_type=domain_type,
        vnc=False,
        # Always a drive (empty without an ISO): media change live needs one at start.
        cdrom=iso_file(session, vm) or "",
    )


def domain_xml(session: Session, vm: VirtualMachine, domain_type: str) -> str:
    return build_domain_xml(domain_spec(session, vm, domain_type))
