"""Leader-only housekeeping, done by exactly one worker at a time.

The role is a lease in scheduler_worker: is_ticker plus a heartbeat fresher than
`lease_for(heartbeat)`, taken in the heartbeat transaction (under a lock, so two
workers never both take a free lease) once its holder stops renewing it.

The arithmetic behind "a SIGKILLed ticker is replaced within two heartbeats":
the ticker renews its lease every half heartbeat and the lease lasts one and a
half, so a ticker may stall for a whole heartbeat without losing the role; a
follower that sees someone else's lease learns when it runs out and beats right
then (not at its next regular heartbeat), so the lease is taken over at most
1.5 heartbeats after the dead ticker's last renewal. A worker is taken for dead
(and its tasks requeued) after three heartbeats, as in web2py.

Each round runs only while its worker still holds the lease, checked under the
same lock in the round's own transaction: a ticker that stalled and lost the
role never does a round beside its successor.
"""

from __future__ import annotations

import logging
import time

from taskmill.store import Housekeeping, Store

log = logging.getLogger(__name__)

#: how often the ticker renews its lease, and how long the lease lasts, in heartbeats
RENEW_EVERY = 0.5
LEASE = 1.5
#: "nobody is old enough to be dead": ten years, as a silence no worker reaches
_NOBODY = 10 * 365 * 86400.0


def lease_for(heartbeat: float) -> float:
    return heartbeat * LEASE


class Ticker:
    def __init__(self, store: Store, dead_after: float, worker_name: str | None = None) -> None:
        self.store = store
        self.dead_after = dead_after
        self.worker_name = worker_name
        self._bury_from = 0.0  # time.monotonic() from which silent workers are dead

    def defer_burials(self) -> None:
        """This worker has just reached the database again after failing to: as far as
        it knows nobody could beat meanwhile (a database restart cuts off every worker),
        so it judges no worker dead before each has had dead_after seconds to beat
        again. Without this, an outage longer than dead_after made the first worker
        back requeue the running tasks of all the others, which then ran twice."""
        self._bury_from = time.monotonic() + self.dead_after

    def tick(self) -> Housekeeping:
        """Requeue tasks of workers silent for dead_after seconds, expire stale tasks."""
        dead_after = self.dead_after if time.monotonic() >= self._bury_from else _NOBODY
        done = self.store.housekeeping(dead_after, ticker=self.worker_name)
        if not done.held:
            log.info("ticker %s: lost the lease before its round; skipped", self.worker_name)
        if done.dead_workers:
            log.warning(
                "ticker: workers %s stopped beating; %d task(s) requeued",
                ", ".join(done.dead_workers),
                done.requeued,
            )
        if done.expired:
            log.info("ticker: %d task(s) passed their stop_time: EXPIRED", done.expired)
        return done
