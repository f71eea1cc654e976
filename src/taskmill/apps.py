"""Finding the application's Scheduler from a `MODULE:OBJECT` spec.

Workers, their child processes and the CLI all import the application the same
way, so a task function is always resolved through the app's own registry.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from typing import TYPE_CHECKING, Any

from taskmill.errors import AppImportError

if TYPE_CHECKING:
    from taskmill.eden import TaskManager
    from taskmill.scheduler import Scheduler


def load_app(spec: str) -> Scheduler:
    """Import `package.module:attribute` and return the Scheduler it names.

    The object may be a Scheduler or anything with a `.scheduler` attribute
    holding one (Eden's TaskManager).
    """
    return load_app_with_hooks(spec)[0]


def load_app_with_hooks(spec: str) -> tuple[Scheduler, TaskManager | None]:
    """load_app, and the object itself when it is a TaskManager: whoever runs the
    app's tasks then wraps each run in its hooks (impersonate, commit, rollback)."""
    from taskmill.eden import TaskManager
    from taskmill.scheduler import Scheduler

    if not isinstance(spec, str) or spec.count(":") != 1:
        raise AppImportError(f"--app must look like 'package.module:object', not {spec!r}")
    module_name, attribute = spec.split(":")
    if not module_name or not attribute:
        raise AppImportError(f"--app must look like 'package.module:object', not {spec!r}")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # like `python -m`: the current directory is importable
    try:
        module = importlib.import_module(module_name)
    except Exception:
        raise AppImportError(
            f"cannot import {module_name!r} for --app {spec}:\n{traceback.format_exc()}"
        ) from None
    obj: Any = module
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppImportError(f"module {module_name!r} has no attribute {attribute!r}") from None
    scheduler = getattr(obj, "scheduler", obj)
    if not isinstance(scheduler, Scheduler):
        raise AppImportError(
            f"{spec} is a {type(obj).__name__}, not a taskmill Scheduler (or TaskManager)"
        )
    return scheduler, (obj if isinstance(obj, TaskManager) else None)
