"""Failure handling of settlement on real MariaDB, Redis and RQ workers: nothing lost, nothing
doubled, whether MySQL is down, a worker is killed mid-job, or Redis loses its data."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from decimal import Decimal

import pytest
from rq import SimpleWorker
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, ScheduledJobRegistry
from sqlalchemy import func, select, text

from lua.credit import Pricing
from rating.book import RedisRateBook
from schema import Cdr, Clid
from tests.conftest import REDIS_SERVER
from tests.ledger import BUY, DE, OWNER, T0, place_calls
from tests.test_cli import ASTERBILL, run
from workers import jobs, reconcile
from workers.credit_ops import CreditRequest, perform
from workers.jobs import job_id, request_settlement, settle_queue
from workers.reconciler import reconcile_once
from workers.recovery import Recovery
from workers.repair import repair
from workers.settle import read_ended, settle


@pytest.fixture
def env(fresh_mysql_url, key_prefix, monkeypatch):
    values = {
        "DATABASE_URL": fresh_mysql_url,
        "REDIS_URL": REDIS_SERVER,
        "ASTERBILL_KEY_PREFIX": key_prefix,
    }
    for name, value in values.items():  # for in-process workers (jobs read the environment)
        monkeypatch.setenv(name, value)
    return values


def cdr_count(factory) -> int:
    with factory() as session:
        return session.scalar(select(func.count()).select_from(Cdr))


def no_drift(factory, credit) -> bool:
    with factory() as session:
        return reconcile.check(session, credit) == []


def test_jobs_are_coalesced_per_reseller(ledger, env):
    factory, credit, payer = ledger
    place_calls(credit, payer, [5, 65])
    queue = settle_queue(credit.client, credit.keys.prefix)

    asked = [request_settlement(queue, payer.reseller_id) for _ in range(50)]

    assert asked.count(True) == 1 and len(queue) == 1
    SimpleWorker([queue], connection=credit.client).work(burst=True)
    assert cdr_count(factory) == 2
    assert request_settlement(queue, payer.reseller_id)  # a finished job leaves no trace


def test_mysql_down_the_job_is_retried_with_backoff_and_loses_nothing(ledger, env, tmp_path):
    factory, credit, payer = ledger
    place_calls(credit, payer, [30, 90, 3])
    queue = settle_queue(credit.client, credit.keys.prefix)
    request_settlement(queue, payer.reseller_id)
    down = {**env, "DATABASE_URL": "mysql+mysqldb://root@127.0.0.1:1/nowhere"}

    failed = run("worker", "--burst", env=down, cwd=tmp_path)

    # logged with the reason and the calls that wait
    assert "settlement of reseller" in failed.stderr and "3 calls wait in Redis" in failed.stderr
    assert "call-0" in failed.stderr and "scheduled for retry" in failed.stderr
    job = Job.fetch(job_id(queue, payer.reseller_id), connection=credit.client)
    assert job.get_status() == JobStatus.SCHEDULED  # retried after 1 s, then 2, 5, 10, 30
    assert job.id in ScheduledJobRegistry(queue=queue)
    assert len(read_ended(credit, payer.reseller_id)) == 3 and cdr_count(factory) == 0
    time.sleep(1.2)

    ok = run("worker", "--burst", env=env, cwd=tmp_path)  # MySQL is back

    assert ok.returncode == 0, ok.stderr
    assert cdr_count(factory) == 3 and read_ended(credit, payer.reseller_id) == []
    assert no_drift(factory, credit)


def test_a_job_out_of_retries_is_kept_failed_and_requeued_by_the_reconciler(
    ledger, env, monkeypatch
):
    factory, credit, payer = ledger
    place_calls(credit, payer, [42])
    queue = settle_queue(credit.client, credit.keys.prefix)
    monkeypatch.setattr(jobs, "RETRY", None)
    monkeypatch.setenv("DATABASE_URL", "mysql+mysqldb://root@127.0.0.1:1/nowhere")
    request_settlement(queue, payer.reseller_id)
    SimpleWorker([queue], connection=credit.client).work(burst=True)
    failed = FailedJobRegistry(queue=queue)
    assert job_id(queue, payer.reseller_id) in failed  # visible in RQ's failed registry
    assert not request_settlement(queue, payer.reseller_id)  # the failed job still holds it

    report = reconcile_once(factory, credit)

    assert report.requeued == 1 and job_id(queue, payer.reseller_id) not in failed
    monkeypatch.setenv("DATABASE_URL", env["DATABASE_URL"])
    SimpleWorker([queue], connection=credit.client).work(burst=True)
    assert cdr_count(factory) == 1 and no_drift(factory, credit)


def test_a_worker_killed_mid_job_settles_once_after_the_reconciler(ledger, env, tmp_path):
    factory, credit, payer = ledger
    place_calls(credit, payer, [61, 62, 63, 64])
    queue = settle_queue(credit.client, credit.keys.prefix)
    request_settlement(queue, payer.reseller_id)
    blocker = factory()
    # hold the booth's row: the worker's transaction blocks on its balance update
    blocker.execute(select(Clid).where(Clid.id == payer.clid_id).with_for_update())
    worker = subprocess.Popen(
        [ASTERBILL, "worker"],
        env={**os.environ, **env},
        cwd=tmp_path,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not _waiting_on_lock(blocker):
            time.sleep(0.1)
        assert _waiting_on_lock(blocker), "the worker never reached the booth's row"
    finally:
        os.killpg(worker.pid, signal.SIGKILL)  # killed in the middle of its transaction
        worker.wait()
    blocker.rollback()
    blocker.close()
    assert cdr_count(factory) == 0  # MySQL rolled the dead transaction back

    # The job's lease (refreshed by its dead worker) runs out within seconds; the reconciler
    # sees it missing on two passes and hands the job back to the queue.
    recovery = Recovery()
    deadline = time.monotonic() + 30
    while (
        time.monotonic() < deadline
        and not reconcile_once(factory, credit, recovery=recovery).requeued
    ):
        time.sleep(0.5)
    job = Job.fetch(job_id(queue, payer.reseller_id), connection=credit.client)
    assert job.get_status() == JobStatus.QUEUED
    done = run("worker", "--burst", env=env, cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert "not found in Redis" not in done.stderr  # the dead run's execution is gone whole
    assert cdr_count(factory) == 4 and read_ended(credit, payer.reseller_id) == []
    with factory() as session:
        assert session.get(Clid, payer.clid_id).curcredit == Decimal(
            "3.200000"
        )  # 4 x (0.40 + one 0.40 block)
    assert no_drift(factory, credit)


def _waiting_on_lock(session) -> bool:
    waiting = session.execute(
        text(
            "SELECT COUNT(*) FROM information_schema.innodb_trx "
            "WHERE trx_state = 'LOCK WAIT' AND trx_mysql_thread_id <> CONNECTION_ID()"
        )
    ).scalar()
    return waiting > 0


def test_the_reconciler_forgets_calls_settled_before_a_crash(ledger, env):
    factory, credit, payer = ledger
    place_calls(credit, payer, [10, 20])
    calls = read_ended(credit, payer.reseller_id)
    with factory() as session, session.begin():
        settle(session, calls)  # committed, and the worker died before cleaning Redis

    report = reconcile_once(factory, credit)

    assert report.forgotten == 2 and read_ended(credit, payer.reseller_id) == []
    assert report.requested == 0  # nothing left to settle
    assert cdr_count(factory) == 2 and no_drift(factory, credit)


def test_repair_rebuilds_a_redis_that_lost_its_data(ledger, env, tmp_path):
    factory, credit, payer = ledger
    place_calls(credit, payer, [61, 125])
    jobs.settle_reseller(payer.reseller_id)  # the job, run in this process
    perform(factory, credit, CreditRequest("charge", "clid", payer.clid_id, Decimal("10")))
    credit.answer("still-talking", payer, Pricing(DE, BUY, OWNER), T0)  # a call running
    before = credit.client.hgetall(credit.keys.balances(payer.reseller_id))
    # Redis loses the balances and the applied-operation ids (the running call survives)
    credit.client.delete(
        credit.keys.balances(payer.reseller_id), credit.keys.applied_ops(payer.reseller_id)
    )
    assert not no_drift(factory, credit)

    result = run("reconcile", "--repair", env=env, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "1 credit operation(s) marked applied" in result.stdout
    assert credit.client.hgetall(credit.keys.balances(payer.reseller_id)) == before
    assert no_drift(factory, credit)
    # the charge is not applied a second time by a later reconciler pass
    reconcile_once(factory, credit)
    assert credit.client.hgetall(credit.keys.balances(payer.reseller_id)) == before
    with factory() as session:
        repair(session, credit, RedisRateBook(credit.client, credit.keys))  # twice: no change
    assert credit.client.hgetall(credit.keys.balances(payer.reseller_id)) == before
