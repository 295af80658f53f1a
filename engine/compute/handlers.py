"""Compute's job types, registered with the job runner when it imports this module."""

from __future__ import annotations

from engine.compute import deploy, isos, operations, pause
from engine.jobs import register_handler

register_handler(deploy.DEPLOY_JOB, deploy.run_deploy, recover=deploy.recover_deploy)
register_handler("StartVM", operations.run_start, recover=operations.recover_start)
register_handler("StopVM", operations.run_stop, recover=operations.recover_stop)
register_handler("RebootVM", operations.run_reboot)
register_handler("DestroyVM", operations.run_destroy, recover=operations.recover_destroy)
register_handler("ExpungeVM", operations.run_expunge, recover=operations.recover_expunge)
register_handler("MigrateVM", operations.run_migrate, recover=operations.recover_migrate)
register_handler("SuspendVM", pause.run_suspend, recover=pause.recover_suspend)
register_handler("ResumeVM", pause.run_resume, recover=pause.recover_resume)
register_handler(isos.ATTACH_JOB, isos.run_attach_iso, recover=isos.recover_iso)
register_handler(isos.DETACH_JOB, isos.run_detach_iso, recover=isos.recover_iso)
