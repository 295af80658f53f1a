"""SQLModel tables: the topology, ownership, offerings, configuration and the audit log.

Every row has an integer primary key for joins and a UUID as its external id (what the
console and the API show and accept). Enumerated columns are stored as plain strings so
that adding a state is a code change, not a schema migration; the allowed values live in
the StrEnum classes below and the services check them.
"""

from __future__ import annotations

import uuid as uuidlib
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """Aware UTC; SQLModel's UTCDateTime stores it as UTC on every backend."""
    return datetime.now(UTC)


def new_uuid() -> str:
    return str(uuidlib.uuid4())


def _bytes_column(*, nullable: bool = False) -> Column:
    # Byte counts pass 2**31 quickly; PostgreSQL INTEGER would overflow.
    return Column(BigInteger, nullable=nullable, default=0)


class AllocationState(StrEnum):
    ENABLED = "Enabled"
    DISABLED = "Disabled"


class NetworkType(StrEnum):
    BASIC = "Basic"
    ADVANCED = "Advanced"


class HostStatus(StrEnum):
    """Connectivity, as the management server last saw it."""

    CONNECTING = "Connecting"
    UP = "Up"
    DOWN = "Down"
    DISCONNECTED = "Disconnected"
    ALERT = "Alert"
    ERROR = "Error"
    REMOVED = "Removed"


class ResourceState(StrEnum):
    """Administrative intent for a host, separate from its connectivity."""

    ENABLED = "Enabled"
    DISABLED = "Disabled"
    PREPARE_FOR_MAINTENANCE = "PrepareForMaintenance"
    MAINTENANCE = "Maintenance"
    ERROR_IN_MAINTENANCE = "ErrorInMaintenance"


class StoragePoolStatus(StrEnum):
    UP = "Up"
    DOWN = "Down"
    DISABLED = "Disabled"
    PREPARE_FOR_MAINTENANCE = "PrepareForMaintenance"
    MAINTENANCE = "Maintenance"
    ERROR_IN_MAINTENANCE = "ErrorInMaintenance"


class StorageScope(StrEnum):
    CLUSTER = "CLUSTER"
    ZONE = "ZONE"


class AccountType(StrEnum):
    ADMIN = "Admin"
    DOMAIN_ADMIN = "DomainAdmin"
    USER = "User"


class OwnerState(StrEnum):
    ENABLED = "enabled"
    DISABLED = "disabled"
    LOCKED = "locked"


class Hypervisor(StrEnum):
    KVM = "KVM"


# --- ownership -------------------------------------------------------------------------


class Domain(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    uuid: str = Field(default_factory=new_uuid, unique=True, max_length=36)
    name: str = Field(max_length=255)
    parent_id: int | None = Field(default=None, foreign_key="domain.id")
    # Slash-separated path from ROOT ("ROOT/", "ROOT/customers/"), unique like CloudStack's.
    path: str = Field(unique=True, max_length=1024)
    created: datetime = Field(default_factory=utcnow)


class Account(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("domain_id", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    uuid: str = Field(default_factory=new_uuid, unique=True, max_length=36)
    name: str = Field(max_length=255)
    domain_id: int = Field(foreign_key="domain.id", index=True)
    account_type: str = Field(default=AccountType.USER, max_length=32)
    state: str = Field(default=OwnerState.ENABLED, max_length=32)
    created: datetime = Field(default_factory=utcnow)


class User(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    uuid: str = Field(default_factory=new_uuid, unique=True, max_length=36)
    username: str = Field(unique=True, max_length=255)
    account_id: int = Field(foreign_key="account.id", index=True)
    first_name: str = Field(default="", max_length=255)
    last_name: str = Field(default="", max_length=255)
    email: str = Field(default="", max_length=255)
    state: str = Field(default=OwnerState.ENABLED, max_length=32)
    created: datetime = Field(default_factory=utcnow)


# --- infrastructure --------------------------------------------------------------------


class Zone(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    uuid: str = Field(default_factory=new_uuid, unique=True, max_length=36)
    name: str = Field(unique=True, max_length=255)
    description: str = Field(default="", max_length=1024)
    network_type: str = Field(default=NetworkType.ADVANCED, max_length=16)
    dns1: str = Field(max_length=64)
    dns2: str | None = Field(default=None, max_length=64)
    internal_dns1: str = Field(max_length=64)
    internal_dns2: str | None = Field(default=None, max_length=64)
    # Advanced zones: the CIDR that isolated guest networks are carved from by default.
    guest_cidr: str | None = Field(default=None, max_length=64)
    network_domain: str | None = Field(default=None, max_length=255)
    allocation_state: str = Field(default=AllocationState.ENABLED, max_length=16)
    created: datetime = Field(default_factory=utcnow)


class Pod(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("zone_id", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    uuid: str = Field(default_factory=new_uuid, unique=True, max_length=36)
    zone_id: int = Field(foreign_key="zone.id", index=True)
    name: str = Field(max_length=255)
    gateway: str = Field(max_length=64)
    netmask: str = Field(max_length=64)
    # Derived from gateway and netmask; stored so overlap checks need no recomputation.
    cidr: str = Field(max_length=64)
    # The management range: addresses handed to hosts and system services of the pod.
    start_ip: str = Field(max_length=64)
    end_ip: str = Field(max_length=64)
    allocation_state: str = Field(default=AllocationState.ENABLED, max_length=16)
    created: datetime = Field(default_factory=utcnow)


class Cluster(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("pod_id", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    uuid: str = Field(default_factory=new_uuid, unique=True, max_length=36)
    zone_id: int = Field(foreign_key="zone.id", index=True)
    pod_id: int = Field(foreign_key="pod.id", index=True)
    name: str = Field(max_length=255)
    hypervisor: str = Field(default=Hypervisor.KVM, max_length=32)
    # Cluster-scope values of CloudStack settings; None inherits the global setting.
    cpu_overprovisioning_factor: float | None = None
    mem_overprovisioning_factor: float | None = None
    cpu_disable_threshold: float | None = None
    mem_disable_threshold: float | None = None
    allocation_state: str = Field(default=AllocationState.ENABLED, max_length=16)
    created: datetime = Field(default_factory=utcnow)


class Host(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("cluster_id", "name"),
        Index("ix_host_zone_status", "zone_id", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    uuid: str = Field(default_factory=new_uuid, unique=True, max_length=36)
    zone_id: int = Field(foreign_key="zone.id")
    pod_id: int = Field(foreign_key="pod.id", index=True)
    cluster_id: int = Field(foreign_key="cluster.id", index=True)
    name: str = Field(max_length=255)
    uri: str = Field(unique=True, max_length=1024)
    address: str | None = Field(default=None, max_length=64)
    hypervisor: str = Field(default=Hypervisor.KVM, max_length=32)
    hypervisor_version: str | None = Field(default=None, max_length=64)
    libvirt_version: str | None = Field(default=None, max_length=64)
    hostname: str | None = Field(default=None, max_length=255)
    cpu_model: str | None = Field(default=None, max_length=255)
    cpu_sockets: int = 1
    cpu_cores: int  # total cores of the host, all sockets
    cpu_mhz: int
    memory_bytes: int = Field(sa_column=_bytes_column())
    status: str = Field(default=HostStatus.UP, max_length=32)
    resource_state: str = Field(default=ResourceState.ENABLED, max_length=32)
    # Claimed capacity: `used` by running VMs, `reserved` for stopped VMs that may return.
    cpu_used_mhz: int = Field(default=0, sa_column=_bytes_column())
    cpu_reserved_mhz: int = Field(default=0, sa_column=_bytes_column())
    memory_used_bytes: int = Field(default=0, sa_column=_bytes_column())
    memory_reserved_bytes: int = Field(default=0, sa_column=_bytes_column())
    # Bumped on every capacity or state change so an in-memory snapshot knows it is stale.
    capacity_version: int = 0
    last_seen: datetime | None = None
    created: datetime = Field(default_factory=utcnow)


class HostTag(SQLModel, table=True):
    host_id: int = Field(foreign_key="host.id", primary_key=True, ondelete="CASCADE")
    tag: str = Field(primary_key=True, max_length=255, index=True)


class StoragePool(SQLModel, table=True):
    """Primary storage: where the disks of running VMs live."""

    __table_args__ = (UniqueConstraint("zone_id", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    uuid: str = Field(default_factory=new_uuid, unique=True, max_length=36)
    zone_id: int = Field(foreign_key="zone.id", index=True)
    pod_id: int | None = Field(default=None, foreign_key="pod.id", index=True)
    cluster_id: int | None = Field(default=None, foreign_key="cluster.id", index=True)
    name: str = Field(max_length=255)
    scope: str = Field(default=StorageScope.CLUSTER, max_length=16)
    pool_type: str = Field(default="dir", max_length=32)
    server: str | None = Field(default=None, max_length=255)  # NFS server for netfs pools
    path: str = Field(max_length=1024)
    libvirt_pool_name: str = Field(max_length=255)
    capacity_bytes: int = Field(default=0, sa_column=_bytes_column())
    used_bytes: int = Field(default=0, sa_column=_bytes_column())
    # Sum of the virtual sizes of the volumes (and cached templates) placed on the pool.
    allocated_bytes: int = Field(default=0, sa_column=_bytes_column())
    # Pool-scope values of CloudStack settings; None inherits the global setting.
    overprovisioning_factor: float | None = None
    capacity_disable_threshold: float | None = None
    allocated_disable_threshold: float | None = None
    status: str = Field(default=StoragePoolStatus.UP, max_length=32)
    created: datetime = Field(default_factory=utcnow)


class StoragePoolTag(SQLModel, table=True):
    pool_id: int = Field(foreign_key="storagepool.id", primary_key=True, ondelete="CASCADE")
    tag: str = Field(primary_key=True, max_length=255, index=True)


class ImageStore(SQLModel, table=True):
    """Secondary storage of a zone: templates, ISOs and volume snapshots."""

    __table_args__ = (UniqueConstraint("zone_id", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    uuid: str = Field(default_factory=new_uuid, unique=True, max_length=36)
    zone_id: int = Field(foreign_key="zone.id", index=True)
    name: str = Field(max_length=255)
    url: str = Field(max_length=1024)
    protocol: str = Field(default="file", max_length=16)
    capacity_bytes: int = Field(default=0, sa_column=_bytes_column())
    used_bytes: int = Field(default=0, sa_column=_bytes_column())
    read_only: bool = False
    created: datetime = Field(default_factory=utcnow)


# --- offerings -------------------------------------------------------------------------


class ServiceOffering(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    uuid: str = Field(default_factory=new_uuid, unique=True, max_length=36)
    name: str = Field(unique=True, max_length=255)
    display_text: str = Field(default="", max_length=1024)
    cpu_count: int
    cpu_mhz: int
    memory_bytes: int = Field(sa_column=_bytes_column())
    # Comma-separated, normalised (sorted, unique), as CloudStack stores offering tags.
    host_tags: str = Field(default="", max_length=1024)
    storage_tags: str = Field(default="", max_length=1024)
    offer_ha: bool = False
    limit_cpu_use: bool = False
    deployment_planner: str | None = Field(default=None, max_length=64)
    is_system: bool = False
    state: str = Field(default="Active", max_length=16)
    created: datetime = Field(default_factory=utcnow)
    # A customized offering: each VM names its own CPU count, speed and memory within
    # these limits (None: no limit of the offering's own); cpu_count, cpu_mhz and
    # memory_bytes above are then the defaults a deploy offers.
    is_customized: bool = Field(default=False, sa_column_kwargs={"server_default": "0"})
    min_cpu_count: int | None = None
    max_cpu_count: int | None = None
    min_cpu_mhz: int | None = None
    max_cpu_mhz: int | None = None
    min_memory_bytes: int | None = Field(default=None, sa_type=BigInteger)
    max_memory_bytes: int | None = Field(default=None, sa_type=BigInteger)


class DiskOffering(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    uuid: str = Field(default_factory=new_uuid, unique=True, max_length=36)
    name: str = Field(unique=True, max_length=255)
    display_text: str = Field(default="", max_length=1024)
    disk_size_bytes: int = Field(default=0, sa_column=_bytes_column())
    is_customized: bool = False
    storage_tags: str = Field(default="", max_length=1024)
    provisioning_type: str = Field(default="thin", max_length=16)
    state: str = Field(default="Active", max_length=16)
    created: datetime = Field(default_factory=utcnow)


# --- configuration and audit -----------------------------------------------------------


class Configuration(SQLModel, table=True):
    """A CloudStack setting: its global value (None = default) and where it may be overridden."""

    name: str = Field(primary_key=True, max_length=255)
    category: str = Field(default="Advanced", max_length=64)
    value: str | None = Field(default=None, max_length=4096)
    default_value: str = Field(max_length=4096)
    value_type: str = Field(max_length=16)  # int, float, bool, str
    # Comma-separated scopes below global where an override is allowed.
    scopes: str = Field(default="", max_length=255)
    description: str = Field(default="", max_length=4096)
    updated: datetime | None = None


class ConfigurationOverride(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("name", "scope_type", "scope_id"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(foreign_key="configuration.name", max_length=255)
    scope_type: str = Field(max_length=32)  # zone, cluster, storagepool, account
    scope_id: int
    value: str = Field(max_length=4096)
    updated: datetime = Field(default_factory=utcnow)


class Event(SQLModel, table=True):
    """The audit log: who did what to which object, when, and the outcome."""

    id: int | None = Field(default=None, primary_key=True)
    uuid: str = Field(default_factory=new_uuid, unique=True, max_length=36)
    created: datetime = Field(default_factory=utcnow, index=True)
    user_id: int | None = Field(default=None, foreign_key="user.id")
    account_id: int | None = Field(default=None, foreign_key="account.id")
    username: str = Field(max_length=255)
    event_type: str = Field(max_length=64, index=True)  # CloudStack's names: ZONE.CREATE ...
    level: str = Field(default="INFO", max_length=16)
    state: str = Field(default="Completed", max_length=16)
    resource_type: str = Field(max_length=64)
    resource_uuid: str | None = Field(default=None, max_length=36)
    resource_name: str = Field(default="", max_length=255)
    description: str = Field(default="", max_length=4096)


# --- workloads: VMs, volumes, templates and ISOs ----------------------------------------


class VmState(StrEnum):
    """CloudStack's VM states. Starting, Stopping, Migrating and Expunging are transitional
    and always belong to exactly one live job."""

    STOPPED = "Stopped"
    STARTING = "Starting"
    RUNNING = "Running"
    # Paused on its host (libvirt "paused"): it keeps its memory, so its host capacity too.
    SUSPENDED = "Suspended"
    STOPPING = "Stopping"
    MIGRATING = "Migrating"
    DESTROYED = "Destroyed"
    EXPUNGING = "Expunging"
    EXPUNGED = "Expunged"
    ERROR = "Error"
    UNKNOWN = "Unknown"


class PowerState(StrEnum):
    """What the hypervisor last reported, kept apart from the intended `VmState`."""

    POWER_ON = "PowerOn"
    POWER_OFF = "PowerOff"
    POWER_UNKNOWN = "PowerUnknown"
    POWER_REPORT_MISSING = "PowerReportMissing"


class VirtualMachine(SQLModel, table=True):
    __table_args__ = (
        Index("ix_vm_host_state", "host_id", "state"),
        Index("ix_vm_zone_state", "zone_id", "state"),
        Index("ix_vm_account_state", "account_id", "state"),
    )

    id: int | None = Field(default=None, primary_key=True)
    uuid: str = Field(default_factory=new_uuid, unique=True, max_length=36)
    name: str = Field(max_length=255, index=True)  # the guest hostname
    display_name: str = Field(default="", max_length=255)
    # The libvirt domain name on its host (CloudStack: i-<account>-<id>-VM).
    instance_name: str = Field(unique=True, max_length=255)
    account_id: int = Field(foreign_key="account.id")
    domain_id: int = Field(foreign_key="domain.id", index=True)
    zone_id: int = Field(foreign_key="zone.id")
    pod_id: int | None = Field(default=None, foreign_key="pod.id", index=True)
    cluster_id: int | None = Field(default=None, foreign_key="cluster.id", index=True)
    host_id: int | None = Field(default=None, foreign_key="host.id")
    # Where the VM last ran; a restart tries it first (its share is reserved there).
    last_host_id: int | None = Field(default=None, foreign_key="host.id", index=True)
    service_offering_id: int | None = Field(default=None, foreign_key="serviceoffering.id")
    template_id: int | None = Field(default=None, foreign_key="template.id", index=True)
    iso_id: int | None = Field(default=None, foreign_key="template.id")
    # Copied from the offering at deploy (custom offerings set them per VM).
    cpu_count: int
    cpu_mhz: int
    memory_bytes: int = Field(sa_column=_bytes_column())
    state: str = Field(default=VmState.STOPPED, max_length=32)
    power_state: str = Field(default=PowerState.POWER_OFF, max_length=32)
    power_state_updated: datetime | None = None
    ha_enabled: bool = False
    # Bumped by every compare-and-set transition.
    update_count: int = 0
    created: datetime = Field(default_factory=utcnow)
    removed: datetime | None = None


class VolumeType(StrEnum):
    ROOT = "ROOT"
    DATADISK = "DATADISK"


class VolumeState(StrEnum):
    ALLOCATED = "Allocated"  # placed on a pool in the database, not created yet
    CREATING = "Creating"
    READY = "Ready"
    RESIZING = "Resizing"
    MIGRATING = "Migrating"
    SNAPSHOTTING = "Snapshotting"
    DESTROY = "Destroy"
    EXPUNGING = "Expunging"
    EXPUNGED = "Expunged"
    ERROR = "Error"


class ImageFormat(StrEnum):
    QCOW2 = "QCOW2"
    RAW = "RAW"
    ISO = "ISO"


class Volume(SQLModel, table=True):
    __table_args__ = (Index("ix_volume_pool_state", "pool_id", "state"),)

    id: int | None = Field(default=None, primary_key=True)
    uuid: str = Field(default_factory=new_uuid, unique=True, max_length=36)
    name: str = Field(max_length=255)
    account_id: int = Field(foreign_key="account.id", index=True)
    domain_id: int = Field(foreign_key="domain.id")
    zone_id: int = Field(foreign_key="zone.id", index=True)
    pool_id: int | None = Field(default=None, foreign_key="storagepool.id")
    vm_id: int | None = Field(default=None, foreign_key="virtualmachine.id", index=True)
    device_id: int | None = None  # 0 for ROOT; attach order for data disks
    volume_type: str = Field(default=VolumeType.DATADISK, max_length=16)
    disk_offering_id: int | None = Field(default=None, foreign_key="diskoffering.id")
    template_id: int | None = Field(default=None, foreign_key="template.id")
    size_bytes: int = Field(sa_column=_bytes_column())  # virtual size
    format: str = Field(default=ImageFormat.QCOW2, max_length=16)
    # The volume's key in its libvirt pool (file name for dir pools).
    path: str | None = Field(default=None, max_length=1024)
    state: str = Field(default=VolumeState.ALLOCATED, max_length=32)
    update_count: int = 0
    created: datetime = Field(default_factory=utcnow)
    removed: datetime | None = None


class TemplateState(StrEnum):
    ALLOCATED = "Allocated"
    DOWNLOADING = "Downloading"
    READY = "Ready"
    ERROR = "Error"
    INACTIVE = "Inactive"


class Template(SQLModel, table=True):
    """A template or (format ISO) an ISO, as CloudStack keeps both in vm_template."""

    __table_args__ = (UniqueConstraint("account_id", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    uuid: str = Field(default_factory=new_uuid, unique=True, max_length=36)
    name: str = Field(max_length=255)
    display_text: str = Field(default="", max_length=1024)
    account_id: int = Field(foreign_key="account.id")
    domain_id: int = Field(foreign_key="domain.id")
    format: str = Field(default=ImageFormat.QCOW2, max_length=16)
    os_type: str = Field(default="Other Linux (64-bit)", max_length=255)
    hypervisor: str = Field(default=Hypervisor.KVM, max_length=32)
    size_bytes: int = Field(default=0, sa_column=_bytes_column())  # virtual size
    physical_size_bytes: int = Field(default=0, sa_column=_bytes_column())
    checksum: str | None = Field(default=None, max_length=255)  # "sha256:<hex>"
    # A host tag the template needs (CloudStack's template tag), joined with the offering's.
    template_tag: str | None = Field(default=None, max_length=255)
    bootable: bool = True
    is_public: bool = False
    featured: bool = False
    state: str = Field(default=TemplateState.ALLOCATED, max_length=32)
    created: datetime = Field(default_factory=utcnow)
    removed: datetime | None = None


class TemplateStoreRef(SQLModel, table=True):
    """A copy of a template on a zone's secondary storage."""

    template_id: int = Field(foreign_key="template.id", primary_key=True, ondelete="CASCADE")
    store_id: int = Field(foreign_key="imagestore.id", primary_key=True, index=True)
    path: str = Field(max_length=1024)
    state: str = Field(default=TemplateState.ALLOCATED, max_length=32)
    progress: int = 0  # 0-100 while downloading or copying
    size_bytes: int = Field(default=0, sa_column=_bytes_column())
    physical_size_bytes: int = Field(default=0, sa_column=_bytes_column())
    error: str | None = Field(default=None, max_length=4096)
    created: datetime = Field(default_factory=utcnow)


# --- jobs ------------------------------------------------------------------------------


class JobState(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"


class Job(SQLModel, table=True):
    """Long work (anything touching a hypervisor or copying data), run under a lease."""

    __table_args__ = (Index("ix_job_state_created", "state", "created"),)

    id: int | None = Field(default=None, primary_key=True)
    uuid: str = Field(default_factory=new_uuid, unique=True, max_length=36)
    job_type: str = Field(max_length=64)  # CloudStack's command names: DeployVM, StopVM ...
    resource_type: str = Field(max_length=64)
    resource_uuid: str | None = Field(default=None, max_length=36, index=True)
    resource_name: str = Field(default="", max_length=255)
    account_id: int | None = Field(default=None, foreign_key="account.id")
    user_id: int | None = Field(default=None, foreign_key="user.id")
    username: str = Field(default="", max_length=255)
    # The management-server process that holds the lease ("host:pid:start"), renewed by
    # heartbeat; a job whose lease ran out belongs to a dead owner.
    owner: str | None = Field(default=None, max_length=255)
    lease_expires: datetime | None = None
    state: str = Field(default=JobState.PENDING, max_length=16)
    progress: int = 0  # 0-100
    progress_message: str = Field(default="", max_length=1024)
    result: str | None = Field(default=None, max_length=65536)  # JSON
    error: str | None = Field(default=None, max_length=4096)
    created: datetime = Field(default_factory=utcnow)
    started: datetime | None = None
    finished: datetime | None = None
    # What the handler needs (JSON object); set at submit, never changed.
    params: str | None = Field(default=None, max_length=65536)
    # Mutating jobs of one resource run one at a time, in submission order.
    mutating: bool = True
    cancel_requested: bool = False


# --- placement -------------------------------------------------------------------------


class AffinityGroupType(StrEnum):
    """CloudStack's affinity group types (their API names)."""

    HOST_ANTI_AFFINITY = "host anti-affinity"
    HOST_AFFINITY = "host affinity"
    EXPLICIT_DEDICATION = "ExplicitDedication"


class AffinityGroup(SQLModel, table=True):
    """A per-account group of VMs that placement keeps apart (anti-affinity), together
    (affinity), or on resources dedicated to the account (explicit dedication)."""

    __table_args__ = (UniqueConstraint("account_id", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    uuid: str = Field(default_factory=new_uuid, unique=True, max_length=36)
    name: str = Field(max_length=255)
    description: str = Field(default="", max_length=1024)
    group_type: str = Field(max_length=32)
    account_id: int = Field(foreign_key="account.id", index=True)
    domain_id: int = Field(foreign_key="domain.id")
    created: datetime = Field(default_factory=utcnow)


class AffinityGroupMember(SQLModel, table=True):
    group_id: int = Field(foreign_key="affinitygroup.id", primary_key=True, ondelete="CASCADE")
    vm_id: int = Field(
        foreign_key="virtualmachine.id", primary_key=True, index=True, ondelete="CASCADE"
    )


class DedicationScope(StrEnum):
    ZONE = "zone"
    POD = "pod"
    CLUSTER = "cluster"
    HOST = "host"


class Dedication(SQLModel, table=True):
    """A zone, pod, cluster or host reserved to one account, or to a domain (and its
    sub-domains). Exactly one of account_id / domain_id is set."""

    __table_args__ = (UniqueConstraint("scope", "scope_id"),)

    id: int | None = Field(default=None, primary_key=True)
    uuid: str = Field(default_factory=new_uuid, unique=True, max_length=36)
    scope: str = Field(max_length=16)
    scope_id: int
    zone_id: int = Field(foreign_key="zone.id", index=True)
    account_id: int | None = Field(default=None, foreign_key="account.id")
    domain_id: int | None = Field(default=None, foreign_key="domain.id")
    created: datetime = Field(default_factory=utcnow)


class ClaimState(StrEnum):
    USED = "used"  # the VM runs (or is starting) on the host: counted in *used*
    RESERVED = "reserved"  # stopped: counted in *reserved* on its last host until reserved_until
    DISKS = "disks"  # stopped past its reservation: only its volumes hold pool space


class PlacementClaim(SQLModel, table=True):
    """What one placement took from a host (and, through its volumes, from pools), so that
    stop, expiry and destroy give back exactly that."""

    __table_args__ = (
        Index("ix_placementclaim_host_state", "host_id", "state"),
        Index("ix_placementclaim_account_zone", "account_id", "zone_id"),
        Index("ix_placementclaim_state_until", "state", "reserved_until"),
    )

    id: int | None = Field(default=None, primary_key=True)
    uuid: str = Field(default_factory=new_uuid, unique=True, max_length=36)
    # None for placements made without a VM row (benchmarks, capacity what-ifs).
    vm_id: int | None = Field(
        default=None, foreign_key="virtualmachine.id", unique=True, ondelete="CASCADE"
    )
    account_id: int = Field(foreign_key="account.id")
    domain_id: int = Field(foreign_key="domain.id")
    zone_id: int = Field(foreign_key="zone.id")
    pod_id: int = Field(foreign_key="pod.id")
    cluster_id: int = Field(foreign_key="cluster.id")
    host_id: int = Field(foreign_key="host.id")
    cpu_count: int
    cpu_mhz: int = Field(sa_column=_bytes_column())  # cpu_count x speed: what the host gave
    memory_bytes: int = Field(sa_column=_bytes_column())
    state: str = Field(default=ClaimState.USED, max_length=16)
    reserved_until: datetime | None = None
    created: datetime = Field(default_factory=utcnow)


class PlacementClaimVolume(SQLModel, table=True):
    """A volume of a claim: the pool it went to and the bytes it allocated there."""

    claim_id: int = Field(foreign_key="placementclaim.id", primary_key=True, ondelete="CASCADE")
    position: int = Field(primary_key=True)
    pool_id: int = Field(foreign_key="storagepool.id", index=True)
    volume_id: int | None = Field(default=None, foreign_key="volume.id")
    size_bytes: int = Field(sa_column=_bytes_column())


# --- ipam ------------------------------------------------------------------------------
#
# Every allocatable thing (public address, guest address, pod management address, VNI) is
# a row with a state; allocation is one UPDATE that picks a Free row and marks it, backed
# by unique constraints. IPv4 addresses are kept twice: dotted text for people and an
# integer (`ip_int`, BIGINT: 2**32 does not fit PostgreSQL's INTEGER) for ordering and
# range queries. `ip_version` and the nullable `ip6_*` columns leave room for IPv6.


def _ip_int_column(*, nullable: bool = False) -> Column:
    return Column(BigInteger, nullable=nullable)


class IpAddressState(StrEnum):
    """CloudStack's states of an address (public, guest or management)."""

    FREE = "Free"
    ALLOCATING = "Allocating"
    ALLOCATED = "Allocated"
    RELEASING = "Releasing"  # released under quarantine, not yet Free
    RESERVED = "Reserved"  # held for system use or by an operator


class IsolationMethod(StrEnum):
    VLAN = "vlan"
    VXLAN = "vxlan"
    UNTAGGED = "untagged"


class GuestType(StrEnum):
    SHARED = "Shared"
    ISOLATED = "Isolated"


class NetworkState(StrEnum):
    ALLOCATED = "Allocated"  # in the database; nothing set up on hosts yet
    IMPLEMENTED = "Implemented"
    SHUTDOWN = "Shutdown"


class VniState(StrEnum):
    FREE = "Free"
    ALLOCATED = "Allocated"


class TrafficDirection(StrEnum):
    INGRESS = "ingress"
    EGRESS = "egress"


class RuleProtocol(StrEnum):
    TCP = "tcp"
    UDP = "udp"
    ICMP = "icmp"
    ALL = "all"


class PublicIpRange(SQLModel, table=True):
    """A public IP range of a zone (CloudStack's `vlan` table)."""

    id: int | None = Field(default=None, primary_key=True)
    uuid: str = Field(default_factory=new_uuid, unique=True, max_length=36)
    zone_id: int = Field(foreign_key="zone.id", index=True)
    # A pod-scoped range becomes zone-wide if its pod is deleted.
    pod_id: int | None = Field(default=None, foreign_key="pod.id", index=True, ondelete="SET NULL")
    gateway: str = Field(max_length=64)
    netmask: str = Field(max_length=64)
    cidr: str = Field(max_length=64)
    isolation: str = Field(default=IsolationMethod.UNTAGGED, max_length=16)
    vlan_tag: int | None = None  # VLAN id or VXLAN VNI; None when untagged
    start_ip: str = Field(max_length=64)
    end_ip: str = Field(max_length=64)
    start_int: int = Field(sa_column=_ip_int_column())
    end_int: int = Field(sa_column=_ip_int_column())
    size: int  # allocatable addresses (rows) in the range
    ip_version: int = 4
    ip6_gateway: str | None = Field(default=None, max_length=64)
    ip6_cidr: str | None = Field(default=None, max_length=64)
    # Dedicated ranges serve their account (or domain) first; None = the shared pool.
    account_id: int | None = Field(default=None, foreign_key="account.id", index=True)
    domain_id: int | None = Field(default=None, foreign_key="domain.id", index=True)
    for_system: bool = False  # reserved for system VMs / services, never for tenants
    created: datetime = Field(default_factory=utcnow)


class PublicIpAddress(SQLModel, table=True):
    """One allocatable public address (CloudStack's `user_ip_address`)."""

    __table_args__ = (
        UniqueConstraint("zone_id", "ip_int"),
        Index("ix_publicip_range_state_ip", "range_id", "state", "ip_int"),
    )

    id: int | None = Field(default=None, primary_key=True)
    uuid: str = Field(default_factory=new_uuid, unique=True, max_length=36)
    range_id: int = Field(foreign_key="publiciprange.id", ondelete="CASCADE")
    zone_id: int = Field(foreign_key="zone.id")
    ip_int: int = Field(sa_column=_ip_int_column())
    address: str = Field(max_length=64)
    ip_version: int = 4
    state: str = Field(default=IpAddressState.FREE, max_length=16)
    account_id: int | None = Field(default=None, foreign_key="account.id", index=True)
    domain_id: int | None = Field(default=None, foreign_key="domain.id")
    network_id: int | None = Field(default=None, foreign_key="guestnetwork.id", index=True)
    source_nat: bool = False  # the isolated network's source NAT address
    allocated: datetime | None = None
    quarantine_until: datetime | None = None


class GuestNetwork(SQLModel, table=True):
    """A guest network: the Basic zone's shared one, or an Advanced zone's shared/isolated."""

    __table_args__ = (UniqueConstraint("zone_id", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    uuid: str = Field(default_factory=new_uuid, unique=True, max_length=36)
    name: str = Field(max_length=255)
    display_text: str = Field(default="", max_length=1024)
    zone_id: int = Field(foreign_key="zone.id", index=True)
    guest_type: str = Field(max_length=16)
    # Owner of an isolated network; None for shared networks.
    account_id: int | None = Field(default=None, foreign_key="account.id", index=True)
    domain_id: int | None = Field(default=None, foreign_key="domain.id")
    # None for a Basic zone's network: its ranges (one per pod) carry their own networks.
    cidr: str | None = Field(default=None, max_length=64)
    gateway: str | None = Field(default=None, max_length=64)
    netmask: str | None = Field(default=None, max_length=64)
    # CloudStack's IP reservation: VMs get addresses from vm_cidr only; the rest of `cidr`
    # is reserved for machines outside Stratus. None = the whole CIDR.
    vm_cidr: str | None = Field(default=None, max_length=64)
    isolation: str = Field(default=IsolationMethod.VLAN, max_length=16)
    vni: int | None = None  # VLAN id or VXLAN VNI from the zone's pool
    state: str = Field(default=NetworkState.ALLOCATED, max_length=16)
    ip_version: int = 4
    ip6_gateway: str | None = Field(default=None, max_length=64)
    ip6_cidr: str | None = Field(default=None, max_length=64)
    created: datetime = Field(default_factory=utcnow)


class GuestIpRange(SQLModel, table=True):
    """Allocatable guest addresses of a network (a Basic zone has one per pod)."""

    id: int | None = Field(default=None, primary_key=True)
    uuid: str = Field(default_factory=new_uuid, unique=True, max_length=36)
    network_id: int = Field(foreign_key="guestnetwork.id", index=True, ondelete="CASCADE")
    pod_id: int | None = Field(default=None, foreign_key="pod.id", index=True, ondelete="CASCADE")
    gateway: str = Field(max_length=64)
    netmask: str = Field(max_length=64)
    cidr: str = Field(max_length=64)
    start_ip: str = Field(max_length=64)
    end_ip: str = Field(max_length=64)
    start_int: int = Field(sa_column=_ip_int_column())
    end_int: int = Field(sa_column=_ip_int_column())
    size: int
    ip_version: int = 4
    created: datetime = Field(default_factory=utcnow)


class GuestIpAddress(SQLModel, table=True):
    """One allocatable guest address, pre-generated so allocation never scans for a gap."""

    __table_args__ = (
        UniqueConstraint("network_id", "ip_int"),
        Index("ix_guestip_range_state_ip", "range_id", "state", "ip_int"),
    )

    id: int | None = Field(default=None, primary_key=True)
    range_id: int = Field(foreign_key="guestiprange.id", ondelete="CASCADE")
    network_id: int = Field(foreign_key="guestnetwork.id", ondelete="CASCADE")
    ip_int: int = Field(sa_column=_ip_int_column())
    address: str = Field(max_length=64)
    state: str = Field(default=IpAddressState.FREE, max_length=16)
    vm_id: int | None = Field(default=None, foreign_key="virtualmachine.id", index=True)
    allocated: datetime | None = None


class Nic(SQLModel, table=True):
    """A VM's interface on a guest network; (network, address) is unique."""

    __table_args__ = (
        UniqueConstraint("network_id", "ip_int"),
        UniqueConstraint("network_id", "mac"),
    )

    id: int | None = Field(default=None, primary_key=True)
    uuid: str = Field(default_factory=new_uuid, unique=True, max_length=36)
    vm_id: int = Field(foreign_key="virtualmachine.id", index=True)
    network_id: int = Field(foreign_key="guestnetwork.id")
    ip_int: int = Field(sa_column=_ip_int_column())
    address: str = Field(max_length=64)
    mac: str = Field(max_length=17)
    is_default: bool = False
    ip_version: int = 4
    ip6_address: str | None = Field(default=None, max_length=64)
    created: datetime = Field(default_factory=utcnow)


class PodManagementAddress(SQLModel, table=True):
    """One address of a pod's management range, for a host or a system service."""

    __table_args__ = (
        UniqueConstraint("pod_id", "ip_int"),
        Index("ix_podmgmt_pod_state_ip", "pod_id", "state", "ip_int"),
    )

    id: int | None = Field(default=None, primary_key=True)
    pod_id: int = Field(foreign_key="pod.id", ondelete="CASCADE")
    ip_int: int = Field(sa_column=_ip_int_column())
    address: str = Field(max_length=64)
    state: str = Field(default=IpAddressState.FREE, max_length=16)
    # SET NULL: deleting a host (topology) leaves the row, which the next sync frees.
    host_id: int | None = Field(
        default=None, foreign_key="host.id", unique=True, ondelete="SET NULL"
    )
    purpose: str | None = Field(default=None, max_length=64)  # "host", or a system service
    allocated: datetime | None = None


class ZoneVniRange(SQLModel, table=True):
    """A range of VLAN ids or VXLAN VNIs that a zone's guest networks take from."""

    id: int | None = Field(default=None, primary_key=True)
    uuid: str = Field(default_factory=new_uuid, unique=True, max_length=36)
    zone_id: int = Field(foreign_key="zone.id", index=True)
    isolation: str = Field(default=IsolationMethod.VXLAN, max_length=16)
    first_vni: int
    last_vni: int
    created: datetime = Field(default_factory=utcnow)


class ZoneVni(SQLModel, table=True):
    """One VLAN id / VNI of a zone (CloudStack's op_dc_vnet_alloc); used once per zone."""

    __table_args__ = (
        UniqueConstraint("zone_id", "vni"),
        Index("ix_zonevni_range_state_vni", "range_id", "state", "vni"),
    )

    id: int | None = Field(default=None, primary_key=True)
    zone_id: int = Field(foreign_key="zone.id")
    range_id: int = Field(foreign_key="zonevnirange.id", ondelete="CASCADE")
    vni: int
    state: str = Field(default=VniState.FREE, max_length=16)
    network_id: int | None = Field(default=None, foreign_key="guestnetwork.id", index=True)
    account_id: int | None = Field(default=None, foreign_key="account.id")
    allocated: datetime | None = None


class SecurityGroup(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("account_id", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    uuid: str = Field(default_factory=new_uuid, unique=True, max_length=36)
    name: str = Field(max_length=255)
    description: str = Field(default="", max_length=1024)
    account_id: int = Field(foreign_key="account.id", index=True)
    domain_id: int = Field(foreign_key="domain.id")
    is_default: bool = False
    created: datetime = Field(default_factory=utcnow)


class SecurityGroupRule(SQLModel, table=True):
    """Ingress or egress: protocol, ports or ICMP type/code, and a CIDR or another group."""

    id: int | None = Field(default=None, primary_key=True)
    uuid: str = Field(default_factory=new_uuid, unique=True, max_length=36)
    group_id: int = Field(foreign_key="securitygroup.id", index=True, ondelete="CASCADE")
    direction: str = Field(max_length=16)
    protocol: str = Field(max_length=8)
    start_port: int | None = None
    end_port: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    cidr: str | None = Field(default=None, max_length=64)
    remote_group_id: int | None = Field(default=None, foreign_key="securitygroup.id")
    created: datetime = Field(default_factory=utcnow)


class SecurityGroupMember(SQLModel, table=True):
    group_id: int = Field(foreign_key="securitygroup.id", primary_key=True, ondelete="CASCADE")
    vm_id: int = Field(foreign_key="virtualmachine.id", primary_key=True, index=True)


# --- console indexes --------------------------------------------------------------------
#
# Indexes the console's table views sort and page by (engine/listing.py): a zone's or a
# cluster's VMs by name, every VM by creation time, volumes by name. Declared here rather
# than in the classes above so the shared models stay as they were merged.

Index("ix_vm_zone_name", VirtualMachine.zone_id, VirtualMachine.name)
Index("ix_vm_cluster_name", VirtualMachine.cluster_id, VirtualMachine.name)
Index("ix_vm_created", VirtualMachine.created)
Index("ix_volume_name", Volume.name)
# Public addresses in address order across ranges (the console's :ips view).
Index("ix_publicip_ip", PublicIpAddress.ip_int)


# --- job steps ---------------------------------------------------------------------------


class JobStep(SQLModel, table=True):
    """One thing a job did (committed as soon as it was done), so that the process that
    recovers a job whose owner died knows what to undo."""

    __table_args__ = (UniqueConstraint("job_id", "seq"),)

    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(foreign_key="job.id", ondelete="CASCADE")
    seq: int
    step: str = Field(max_length=64)
    data: str = Field(default="{}", max_length=65536)  # JSON object
    created: datetime = Field(default_factory=utcnow)


# --- storage ---------------------------------------------------------------------------


class SnapshotState(StrEnum):
    """CloudStack's volume snapshot states (Creating and Destroying belong to a live job)."""

    CREATING = "Creating"
    BACKED_UP = "BackedUp"
    DESTROYING = "Destroying"
    DESTROYED = "Destroyed"
    ERROR = "Error"


class Snapshot(SQLModel, table=True):
    """A copy of a volume's content on its zone's secondary storage (a full qcow2 image)."""

    __table_args__ = (Index("ix_snapshot_volume_state", "volume_id", "state"),)

    id: int | None = Field(default=None, primary_key=True)
    uuid: str = Field(default_factory=new_uuid, unique=True, max_length=36)
    name: str = Field(max_length=255)
    account_id: int = Field(foreign_key="account.id", index=True)
    domain_id: int = Field(foreign_key="domain.id")
    zone_id: int = Field(foreign_key="zone.id", index=True)
    volume_id: int = Field(foreign_key="volume.id")
    store_id: int | None = Field(default=None, foreign_key="imagestore.id", index=True)
    # The file on the image store, relative to the store's root.
    path: str | None = Field(default=None, max_length=1024)
    size_bytes: int = Field(default=0, sa_column=_bytes_column())  # the volume's virtual size
    physical_size_bytes: int = Field(default=0, sa_column=_bytes_column())
    state: str = Field(default=SnapshotState.CREATING, max_length=32)
    error: str | None = Field(default=None, max_length=4096)
    update_count: int = 0
    created: datetime = Field(default_factory=utcnow)
    removed: datetime | None = None


# --- compute ---------------------------------------------------------------------------


class VmLifecycle(SQLModel, table=True):
    """What the VM lifecycle keeps beside a VM row: why it is in Error (or why its last
    operation failed), when it was destroyed (recoverable until `expunge.delay` seconds
    after), and the placement summary of its last deploy or start."""

    vm_id: int = Field(foreign_key="virtualmachine.id", primary_key=True, ondelete="CASCADE")
    state_reason: str = Field(default="", max_length=4096)
    destroyed: datetime | None = None
    placement_summary: str = Field(default="", max_length=4096)
    updated: datetime = Field(default_factory=utcnow)
