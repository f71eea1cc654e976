"""Exceptions raised by taskmill.

The CLI and the web layer turn these into messages and exit codes; library code
raises the most specific one so callers can tell configuration mistakes from
database trouble from bad task data.
"""

from __future__ import annotations


class TaskmillError(Exception):
    """Base class of every error taskmill raises on purpose."""


class ConfigurationError(TaskmillError):
    """The Scheduler or a worker was set up with values that cannot work."""


class AppImportError(ConfigurationError):
    """`--app MODULE:OBJECT` could not be imported or is not a Scheduler."""


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
