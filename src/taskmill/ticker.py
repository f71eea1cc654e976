"""Leader-only housekeeping, done by exactly one worker at a time.

The role is a lease in scheduler_worker (is_ticker plus a fresh heartbeat),
taken in the heartbeat transaction when its holder stops beating, so a dead
ticker is replaced within a couple of heartbeats and no duty runs twice.
"""

from __future__ import annotations

import logging

from taskmill.store import Housekeeping, Store

log = logging.getLogger(__name__)


class Ticker:
    def __init__(self, store: Store, dead_after: float) -> None:
        self.store = store
        self.dead_after = dead_after

    def tick(self) -> Housekeeping:
        """Requeue tasks of workers silent for dead_after seconds, expire stale tasks."""
        done = self.store.housekeeping(self.dead_after)
        if done.dead_workers:
            log.warning(
                "ticker: workers %s stopped beating; %d task(s) requeued",
                ", ".join(done.dead_workers),
                done.requeued,
            )
        if done.expired:
            log.info("ticker: %d task(s) passed their stop_time: EXPIRED", done.expired)
        return done
