"""Placement: where a VM runs and where its disks live, decided fast, explained, and claimed
safely by any number of processes and engines on one database.

Public API (everything takes a `Caller`):

- `PlacementRequest(zone, offering | cpu_count+cpu_mhz+memory_bytes, volumes=[VolumeRequest],
  account, template / template_tags, affinity_groups, pinned_host, last_host, avoid, planner,
  allocator, vm, seed)`: names or UUIDs, as the console and the API pass them.
  `request.avoiding(hosts=..., clusters=..., pods=...)` is the retry after a failed start.
- `preview(caller, request) -> Plan`: the dry run; places nothing.
- `plan_vm(caller, request, explain_plan=True) -> Plan`: the same decision, explanation optional.
- `place_vm(caller, request) -> Plan`: decide and claim (`plan.claim_uuid`).
- `place_vms(caller, request, count=N, vms=None) -> list[Plan]`: N VMs, one transaction, all
  or none.
- `release_capacity(caller, vm, on="stop" | "destroy")`: stop moves the host share from used
  to reserved on the last host for `capacity.skipcounting.hours` seconds; destroy gives
  back host and pool space. `expire_reservations(caller)` ends reservations that ran out
  (placement also does it on its own before deciding in a zone that has some).
- Affinity groups and dedication: `create_affinity_group`, `add_vm_to_affinity_group`,
  `delete_affinity_group`, `dedicate`, `release_dedication`.

How the VM lifecycle uses it: deploy creates the VM row (and its volumes), then calls
`place_vm(caller, PlacementRequest(zone, offering, volumes=[VolumeRequest(size, volume_id=..)],
vm=vm.uuid, affinity_groups=...))` and records `plan.host_id` / `plan.volumes[i].pool_id` on
the VM and its volumes (placement writes only its claim). A start that fails on the host:
`release_capacity(caller, vm, on="destroy")` for a new VM (on="stop" for a restart, whose
disks stay where they are), then place again with `request.avoiding(hosts=[plan.host_uuid])`,
up to `start.retry` times. Stop:
`release_capacity(.., on="stop")`; start again: `place_vm(caller, PlacementRequest(zone,
vm=vm.uuid))` (the VM's sizes, last host and disks' pools apply). Expunge: `on="destroy"`.

A `Plan` carries the host, cluster and pod, a `VolumePlacement` (pool) per volume, and an
`Explanation`: for every filter how many hosts it excluded, with example host names and
the reason ("lack 8 GiB free memory"), and the winner and runners-up with their scores.
A failed placement raises `InsufficientCapacity` whose message is that explanation in one
line ("zone 'eu-1': 0 of 120 hosts fit: 80 lack 8 GiB free memory, 30 in maintenance,
10 lack tag 'gpu'") and whose `.explanation` holds the details. Bad input raises
`InvalidParameter` / `NotFound` before anything is written.

Rules, CloudStack's (see ../shared/reference/cloudstack-concepts.md):
- filters: zone/pod/cluster enabled; host Up and Enabled (not in maintenance); CPU and memory
  with the cluster's overprovisioning factors, counting used + reserved; cluster disable
  thresholds; host cores and speed; host tags (offering's and template's); dedication;
  host anti-affinity (hosts running or reserved for the group's other VMs); host affinity
  (the host of the group's VMs, once it has one); pinned host (the only candidate; still
  checked, because the claim would refuse an overcommit anyway); avoid set; storage for
  every volume (largest first, counting this plan's earlier volumes).
- a VM restarted with a reserved share tries its last host first, re-using the share.
- planners and allocators: see `engine.placement.planner`.

How it is fast and safe: decisions run on an in-memory `Snapshot` (see
`engine.placement.snapshot`), one per Database per process, checked for freshness with
one cheap query; claims are conditional UPDATEs that re-check host state and limits in SQL
(`engine.placement.claims`). The cluster disable threshold is a planning rule checked on
the snapshot, as in CloudStack; host and pool limits are never exceeded.
"""

from engine.placement.claims import (
    Plan,
    VolumePlacement,
    expire_reservations,
    place_vm,
    place_vms,
    plan_vm,
    preview,
    release_capacity,
)
from engine.placement.explain import Candidate, Explanation, FilterResult
from engine.placement.groups import (
    add_vm_to_affinity_group,
    create_affinity_group,
    dedicate,
    delete_affinity_group,
    release_dedication,
)
from engine.placement.request import Avoid, PlacementRequest, VolumeRequest

__all__ = [
    "Avoid",
    "Candidate",
    "Explanation",
    "FilterResult",
    "PlacementRequest",
    "Plan",
    "VolumePlacement",
    "VolumeRequest",
    "add_vm_to_affinity_group",
    "create_affinity_group",
    "dedicate",
    "delete_affinity_group",
    "expire_reservations",
    "place_vm",
    "place_vms",
    "plan_vm",
    "preview",
    "release_capacity",
    "release_dedication",
]
