"""RQ jobs of settlement: one job per reseller tag settles every call waiting under it.

Delivery is at least once and the write is idempotent (workers/settle.py), so a job may run
twice, or beside another one, without effect. Jobs are coalesced: one job id per reseller
(`<key prefix>-settle-r<id>`), enqueued with `unique=True`, so a busy listener asking a
thousand times a second makes one job, and that job settles everything waiting in batches of
`BATCH` calls per MySQL transaction. A job stops after `BUDGET_S` seconds so that a big
backlog is shared fairly between resellers; the next request (the listener's, or the
reconciler's sweep) goes on.
Failures are retried with backoff, then kept in RQ's failed registry, where the reconciler
requeues them while calls are still waiting. A running job holds a lease (workers/recovery):
a job whose worker was killed is handed back within seconds, not after its timeout.
"""

from __future__ import annotations

import itertools
import logging
import time
from functools import cache

import redis
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError

from ops.settings import load_settings
from workers.settle import SettleReport, settle_pending

log = logging.getLogger("asterbill.jobs")

BATCH = 2000
BUDGET_S = 20.0
# The budget plus one slow batch: a job stuck longer (MySQL stopped) is failed and retried.
# An abandoned job (its worker killed) does not wait for it: its lease says so in seconds.
JOB_TIMEOUT_S = 60
RETRY = Retry(max=5, interval=[1, 2, 5, 10, 30])


def job_id(queue: Queue, reseller_id: int) -> str:
    """One job id per reseller and installation. RQ ids allow letters, digits, _ and -."""
    return f"{queue.name.replace(':', '_')}-r{reseller_id}"


def settle_queue(connection: redis.Redis, key_prefix: str) -> Queue:
    """The settlement queue of one installation (named after its Redis key prefix)."""
    return Queue(f"{key_prefix}-settle", connection=connection)


def request_settlement(queue: Queue, reseller_id: int) -> bool:
    """Ask for the reseller's waiting calls to be settled. False: a job is already queued,
    scheduled for a retry, or running (it will see the calls, or the next request will)."""
    try:
        queue.enqueue_call(
            settle_reseller,
            args=(reseller_id,),
            job_id=job_id(queue, reseller_id),
            unique=True,
            timeout=JOB_TIMEOUT_S,
            result_ttl=0,  # a finished job leaves no hash, so the next request makes a new job
            failure_ttl=7 * 24 * 3600,
            retry=RETRY,
            description=f"settle the ended calls of reseller {reseller_id}",
        )
    except DuplicateJobError:
        return False
    return True


def settle_reseller(reseller_id: int) -> dict:
    """The job: settle the reseller's waiting calls until none is left or the budget is
    spent. Raises (so RQ retries it) when MySQL fails; the calls stay in Redis."""
    from rq import get_current_job

    from workers.recovery import JobLease

    settings = load_settings()
    credit = _credit(settings.redis_url, settings.key_prefix)
    total = SettleReport()
    deadline = time.monotonic() + BUDGET_S
    job = get_current_job()
    queue = settle_queue(credit.client, settings.key_prefix)
    try:
        factory = _factory(settings.database_url)
        with JobLease(queue, reseller_id, job.id if job is not None else None):
            while True:
                report = settle_pending(factory, credit, reseller_id, BATCH)
                total.written += report.written
                total.already += report.already
                if report.written + report.already < BATCH or time.monotonic() > deadline:
                    return {"written": total.written, "already": total.already}
    except Exception as exc:
        _log_waiting(credit, reseller_id, exc)
        raise


def _log_waiting(credit, reseller_id: int, exc: Exception) -> None:
    """The failure, with the calls it leaves waiting (their count and the first ids)."""
    key = credit.keys.ended(reseller_id)
    try:
        count = credit.client.hlen(key)
        first = [k.decode() for k, _ in itertools.islice(credit.client.hscan_iter(key), 20)]
    except redis.RedisError as lost:  # Redis is what failed: say so, keep the first error
        count, first = -1, [f"(Redis unreachable: {lost})"]
    log.error(
        "settlement of reseller %d failed (%s); %s calls wait in Redis, e.g. %s",
        reseller_id,
        exc,
        count if count >= 0 else "?",
        ", ".join(first),
    )


@cache
def _credit(redis_url: str, key_prefix: str):
    """The worker process's Redis (built once)."""
    from ops.wiring import open_credit

    return open_credit(load_settings())


@cache
def _factory(database_url: str):
    """The worker process's database (built once; a failure is retried next time)."""
    from ops.wiring import open_ledger

    return open_ledger(load_settings())[1]


# -- rate deck imports (the back office's large files) ------------------------------------
PROGRESS_EVERY = 5000
PREVIEW_ROWS = 10


def import_queue(connection: redis.Redis, key_prefix: str) -> Queue:
    """Large rate decks are imported by the workers, with progress the page can show."""
    return Queue(f"{key_prefix}-imports", connection=connection)


def import_rate_deck(
    path: str,
    mapping: dict,
    table: str,
    reseller_id: int,
    group_id: int,
    replace: bool,
    dry_run: bool = False,
    max_rows: int | None = None,
) -> dict:
    """The job: the same all-or-nothing import as `asterbill rates import`, then the Redis
    sync of the scope. `job.meta` says how many rows were read; a bad file is a result
    (the errors), not a failure to retry. A dry run writes nothing, keeps the file for the
    import that follows, and returns the first rows as a preview."""
    from pathlib import Path

    from rq import get_current_job

    from ops.errors import InvalidInput
    from rating import ratefiles
    from rating.book import RedisRateBook
    from rating.store import Target, import_rates, sync_scope

    job = get_current_job()
    settings = load_settings()
    credit = _credit(settings.redis_url, settings.key_prefix)
    factory = _factory(settings.database_url)
    target = Target(table, reseller_id, group_id)

    def counted(rows):
        for n, row in enumerate(rows, start=1):
            if job is not None and n % PROGRESS_EVERY == 0:
                job.meta["read"] = n
                job.save_meta()
            yield row

    preview: list = []

    def kept(rows):
        for number, cells in rows:
            if len(preview) < PREVIEW_ROWS:
                preview.append([number, cells])
            yield number, cells

    try:
        rows = ratefiles.mapped_rows(ratefiles.read_cells(Path(path), max_rows=max_rows), mapping)
        if dry_run:
            with factory() as session:
                try:
                    report = import_rates(session, target, kept(counted(rows)), replace=replace)
                finally:
                    session.rollback()  # a dry run writes nothing
        else:
            with factory() as session, session.begin():
                report = import_rates(session, target, counted(rows), replace=replace)
            with factory() as session:
                sync_scope(session, RedisRateBook(credit.client, credit.keys), target)
    except InvalidInput as exc:
        return {"error": str(exc), "dry_run": dry_run, "preview": preview}
    finally:
        if not dry_run:
            Path(path).unlink(missing_ok=True)
    return {
        "inserted": report.inserted,
        "updated": report.updated,
        "read": report.read,
        "dry_run": dry_run,
        "preview": preview,
    }
