"""Exceptions raised by taskmill.

The CLI and the web layer turn these into messages and exit codes; library code
raises the most specific one so callers can tell configuration mistakes from
database trouble from bad task data.
"""

from __future__ import annotations

from typing import Any


class TaskmillError(Exception):
    """Base class of every error taskmill raises on purpose."""


class ConfigurationError(TaskmillError):
    """The Scheduler or a worker was set up with values that cannot work."""


class AppImportError(ConfigurationError):
    """`--app MODULE:OBJECT` could not be imported or is not a Scheduler."""


class InvalidTask(TaskmillError, ValueError):
    """A task was refused before anything was queued or run; `errors` maps each bad
    field to a message, as queue_task's result does."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))


class TaskHookError(TaskmillError):
    """An application hook around a task run (Eden's impersonate or commit) failed,
    or a task needs one that the application does not have."""


class InvalidReference(TaskmillError, ValueError):
    """A task reference is neither an id, a uuid nor a SQLAlchemy condition."""


class TaskNotFound(TaskmillError, LookupError):
    """No task matches the reference given."""


class StoreError(TaskmillError):
    """The database refused or lost an operation the store depends on."""


class DatabaseUnavailable(StoreError):
    """The database could not be reached within the configured time."""


class ProtocolError(TaskmillError):
    """A worker and its child process disagreed about a message."""

    def __init__(self, message: str, *, received: list[dict[str, Any] | None] | None = None):
        super().__init__(message)
        #: the good messages read in the same go before the bad one
        self.received: list[dict[str, Any] | None] = received or []
