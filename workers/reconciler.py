"""The reconciler: a periodic process (Procfile) that makes sure nothing is left behind.

Each pass:
1. re-applies to Redis the credit operations MySQL has and Redis may not (workers/credit_ops);
2. forgets in Redis the ended calls whose CDR is already in MySQL (a worker died between its
   commit and its clean-up);
3. hands abandoned jobs (their worker was killed) back to RQ, requeues failed settlement jobs
   of resellers whose calls still wait, and requests settlement for every reseller with
   waiting calls (the listener's request may have been lost);
4. now and then, checks the ledger invariants and logs any drift seen twice in a row (a
   drift seen once may be a call that moved between the MySQL and the Redis reads).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, StartedJobRegistry

from lua.credit import CreditEngine
from workers import reconcile
from workers.credit_ops import reapply_pending
from workers.jobs import job_id, request_settlement, settle_queue
from workers.pin_lockouts import record_lockouts
from workers.settle import forget_settled, settled_ids

log = logging.getLogger("asterbill.reconciler")


@dataclass
class PassReport:
    reapplied: int = 0
    forgotten: int = 0
    requeued: int = 0
    requested: int = 0


def reconcile_once(factory, credit: CreditEngine, now: float | None = None) -> PassReport:
    """One pass. `now` (seconds since the epoch) decides which running jobs are abandoned."""
    report = PassReport()
    report.reapplied = reapply_pending(factory, credit)
    queue = settle_queue(credit.client, credit.keys.prefix)
    StartedJobRegistry(queue=queue).cleanup(now)  # killed workers' jobs: retried or failed
    failed = FailedJobRegistry(queue=queue)
    for reseller_id in credit.resellers_with_calls("ended"):
        report.forgotten += _forget_settled(factory, credit, reseller_id)
        if not credit.client.hlen(credit.keys.ended(reseller_id)):
            continue
        job = Job.fetch_many([job_id(queue, reseller_id)], connection=credit.client)[0]
        if job is not None and job.get_status() == JobStatus.FAILED:
            failed.requeue(job)
            log.warning("settlement of reseller %d failed before; requeued", reseller_id)
            report.requeued += 1
        elif request_settlement(queue, reseller_id):
            report.requested += 1
    try:
        record_lockouts(factory, credit)  # cards the FastAGI card IVR locked (wrong PINs)
    except Exception:  # never at the cost of the settlement steps above
        log.exception("PIN lockouts not written this pass; kept for the next")
    return report


def _forget_settled(factory, credit: CreditEngine, reseller_id: int, limit: int = 2000) -> int:
    ids = []
    for key, _ in credit.client.hscan_iter(credit.keys.ended(reseller_id), count=limit):
        ids.append(key.decode())
        if len(ids) >= limit:
            break
    with factory() as session:
        settled = sorted(settled_ids(session, ids))
    if settled:
        forget_settled(credit, reseller_id, settled)
        log.info("reseller %d: %d settled calls forgotten in Redis", reseller_id, len(settled))
    return len(settled)


def run_forever(factory, credit: CreditEngine, every_s: float, check_every: int = 6) -> None:
    seen: set[str] = set()
    passes = 0
    while True:
        try:
            report = reconcile_once(factory, credit)
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
