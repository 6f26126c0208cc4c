"""The reconciler: a periodic process (Procfile) that makes sure nothing is left behind.

Each pass:
1. re-applies to Redis the credit operations MySQL has and Redis may not (workers/credit_ops);
2. forgets in Redis the ended calls whose CDR is already in MySQL (a worker died between its
   commit and its clean-up);
3. puts every settlement job of a reseller whose calls wait back to work (workers/recovery):
   due and, MySQL being up, waiting retries, failed jobs, abandoned jobs (their worker was
   killed: the lease is gone), and requests settlement for every reseller with waiting calls
   (the listener's request may have been lost);
4. now and then, checks the ledger invariants and logs any drift seen twice in a row (a
   drift seen once may be a call that moved between the MySQL and the Redis reads).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from rq.registry import StartedJobRegistry

from lua.credit import CreditEngine
from workers import reconcile
from workers.credit_ops import reapply_pending
from workers.jobs import request_settlement, settle_queue
from workers.recovery import Recovery, move_due
from workers.settle import forget_settled, read_ended, settle, settled_ids

log = logging.getLogger("asterbill.reconciler")


@dataclass
class PassReport:
    reapplied: int = 0
    forgotten: int = 0
    requeued: int = 0
    requested: int = 0


def reconcile_once(
    factory, credit: CreditEngine, now: float | None = None, recovery: Recovery | None = None
) -> PassReport:
    """One pass. `now` (seconds since the epoch): RQ's own expiry of started jobs;
    `recovery` remembers, between passes, since when a running job's lease is missing."""
    report = PassReport()
    recovery = recovery if recovery is not None else Recovery()
    report.reapplied = reapply_pending(factory, credit)  # MySQL answered if this returns
    queue = settle_queue(credit.client, credit.keys.prefix)
    StartedJobRegistry(queue=queue).cleanup(now)  # RQ's expiry, for other job kinds
    move_due(queue)
    for reseller_id in credit.resellers_with_calls("ended"):
        report.forgotten += _forget_settled(factory, credit, reseller_id)
        if not credit.client.hlen(credit.keys.ended(reseller_id)):
            continue
        done = recovery.recover(queue, reseller_id, mysql_up=True)
        if done is not None:
            log.warning("settlement job of reseller %d was %s: back to work", reseller_id, done)
            report.requeued += 1
        elif request_settlement(queue, reseller_id):
            report.requested += 1
    return report


def _forget_settled(factory, credit: CreditEngine, reseller_id: int, limit: int = 2000) -> int:
    """Ended calls whose CDR is already in MySQL (a worker died between its commit and its
    clean-up): settled again (nothing is written, unless a record differs from its CDR: a
    dead letter then) and forgotten in Redis."""
    ids = []
    for key, _ in credit.client.hscan_iter(credit.keys.ended(reseller_id), count=limit):
        ids.append(key.decode())
        if len(ids) >= limit:
            break
    with factory() as session:
        settled = sorted(settled_ids(session, ids))
    if settled:
        calls = [c for c in read_ended(credit, reseller_id, None) if c.call_id in set(settled)]
        with factory() as session, session.begin():
            settle(session, calls)
        forget_settled(credit, reseller_id, [c.call_id for c in calls])
        log.info("reseller %d: %d settled calls forgotten in Redis", reseller_id, len(calls))
        return len(calls)
    return 0


def run_forever(factory, credit: CreditEngine, every_s: float, check_every_s: float = 60.0) -> None:
    seen: set[str] = set()
    passes = 0
    check_every = max(1, round(check_every_s / every_s))  # the full check is heavier
    recovery = Recovery()
    while True:
        try:
            report = reconcile_once(factory, credit, recovery=recovery)
            if report.requeued or report.reapplied:
                log.info("pass: %s", report)
            passes += 1
            if passes % check_every == 0:
                with factory() as session:
                    drifts = {str(d) for d in reconcile.check(session, credit)}
                for drift in sorted(drifts & seen):
                    log.error("DRIFT %s", drift)
                seen = drifts
        except Exception:
            log.exception("reconciler pass failed; next pass in %.0f s", every_s)
        time.sleep(every_s)
