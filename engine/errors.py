"""Typed, operator-readable errors.

Every message names the object and the rule it broke, so a front end can show it as is
("pod 'rack-2': gateway 10.1.3.1 is outside 10.1.2.0/24"). `field` names the input at fault
so a form can show the message next to it. `cs_error_code` is the code CloudStack's API
returns for the same class of failure; the future HTTP API maps errors with it.
"""

from __future__ import annotations


class StratusError(Exception):
    """Base of every error the engine raises on purpose."""

    cs_error_code = 530  # INTERNAL_ERROR

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return self.message


class InvalidParameter(StratusError):
    """Input that breaks a validation rule; nothing was written."""

    cs_error_code = 431  # PARAM_ERROR


class NotFound(StratusError):
    """The named object does not exist."""

    cs_error_code = 431


class AlreadyExists(StratusError):
    """A unique name, URI or address is already taken."""

    cs_error_code = 431


class InUse(StratusError):
    """The object still has children or consumers and cannot be removed."""

    cs_error_code = 536  # RESOURCE_IN_USE_ERROR


class StateConflict(StratusError):
    """The object is not in the state the operation needs (compare-and-set lost)."""

    cs_error_code = 530  # CloudStack reports invalid-state failures as INTERNAL_ERROR


class InsufficientCapacity(StratusError):
    """No resource can satisfy the request; the message says which filter excluded what."""

    cs_error_code = 533  # INSUFFICIENT_CAPACITY_ERROR


class DatabaseUnavailable(StratusError):
    """The database cannot be reached or opened."""


class SchemaTooNew(StratusError):
    """The database was migrated by a newer Stratus than this one."""


class PermissionDenied(StratusError):
    """The acting user may not do this."""

    cs_error_code = 531  # ACCOUNT_ERROR
