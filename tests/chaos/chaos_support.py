"""Shared by the chaos tests: the short/full switch, and helpers over the harness.

`make test` runs the short form (bounded to a few minutes on two loaded cores);
`make chaos` sets TASKMILL_CHAOS=full for the sizes the reliability promise is
stated with in docs/guarantees.md (10,000 tasks, 100 kills per backend).
"""

from __future__ import annotations

import collections
import os
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

INTEGRATION_DIR = Path(__file__).resolve().parents[1] / "integration"
if str(INTEGRATION_DIR) not in sys.path:
    sys.path.insert(0, str(INTEGRATION_DIR))

from harness import Cluster  # noqa: E402

FULL = os.environ.get("TASKMILL_CHAOS", "").strip().lower() == "full"
APP = "chaos_app:sched"
BACKENDS = ("sqlite", "postgres", "mysql")
_SERVER_MARKS = {"postgres": pytest.mark.postgres, "mysql": pytest.mark.mysql}

#: a test that only `make chaos` runs (the short form stays within a few minutes)
full_only = pytest.mark.skipif(not FULL, reason="full form only: make chaos")


def on_backends(*short: str) -> pytest.MarkDecorator:
    """Run the test on every backend under `make chaos`, on `short` ones in `make test`
    (each chosen where a bug it guards against showed first)."""
    chosen = BACKENDS if FULL else short
    return pytest.mark.parametrize(
        "db_url",
        [pytest.param(b, id=b, marks=_SERVER_MARKS.get(b, ())) for b in chosen],
        indirect=True,
    )


def under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def status_counts(cluster: Cluster) -> collections.Counter[str]:
    task = cluster.sched.tables.scheduler_task
    with cluster.sched.store.engine.connect() as conn:
        rows = conn.execute(sa.select(task.c.status, sa.func.count()).group_by(task.c.status))
        return collections.Counter({status: count for status, count in rows})


def completed_runs_per_task(cluster: Cluster) -> collections.Counter[int]:
    run = cluster.sched.tables.scheduler_run
    with cluster.sched.store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(run.c.task_id, sa.func.count())
            .where(run.c.status == "COMPLETED")
            .group_by(run.c.task_id)
        )
        return collections.Counter({task_id: count for task_id, count in rows})
