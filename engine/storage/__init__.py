"""Storage: templates and ISOs, image-store copies, OS types, volumes and snapshots.

Public API (services take a `Caller`; long work returns a Job run by the storage handlers
in engine/storage/handlers.py; `run_*` functions are what those jobs execute):

Templates and ISOs (`engine.storage.templates`):
- `register_template(caller, name, zone=, source=<path or binary stream>, format=, os_type=,
  checksum=)` / `register_iso(...)`: copied onto the zone's image store with the checksum
  verified on the way ("sha256:<hex>", "{SHA-256}<hex>" or plain md5/sha256 hex), checked
  with qemu-img (backing / external data files refused), Ready when it returns; nothing is
  written on any failure. `submit_register_template(caller, name, zone=, path=)`: the
  same from a large local file, as a RegisterTemplate job.
- `copy_template(caller, template, zone)` -> CopyTemplate job (progress; chunked copy,
  checksum re-verified, partial file removed on failure).
- `delete_template(caller, template, zone=None)`: refused naming the VMs/volumes using it.
- `template_path_in_zone(db, template, zone) -> (Path, "qcow2" | "raw" | "iso")`: for
  compute; NotFound / StateConflict saying why when it is not Ready there.
- `list_templates`, `get_template`, `template_copies`.
- OS types: `engine.storage.ostypes.list_os_types()`, `check_os_type()` (data/os_types.toml).

Volumes (`engine.storage.volumes`):
- `create_volume(caller, name, zone=, disk_offering=, size_bytes=None)`: Allocated (custom
  size only with a custom offering).
- `attach_volume(caller, volume, vm)` / `detach_volume(caller, volume)` -> jobs queued on the
  VM. A new volume is created on the pool of the VM's root volume; a running VM gets it
  hot-plugged (SCSI), a stopped one only records it (Volume.vm_id / device_id), and
  `vm_disks(db, vm)` / `disk_target()` give compute the disks to define.
- `resize_volume(caller, volume, size_bytes= | disk_offering=)`: grow only; a job (live
  blockResize on a running VM) unless the volume has no file yet.
- `delete_volume(caller, volume)`: refused while attached; a job that removes the file.
- Pool space of volumes placement did not claim: `engine.storage.pool_space`.

Snapshots (`engine.storage.snapshots`): `create_snapshot`, `delete_snapshot`,
`revert_snapshot`, `create_template_from(caller, name, volume= | snapshot=)`: jobs; a
volume in use by a running VM is refused ("stop VM first").
"""

from engine.storage.templates import template_path_in_zone
from engine.storage.volumes import VmDisk, disk_target, vm_disks

__all__ = ["VmDisk", "disk_target", "template_path_in_zone", "vm_disks"]
