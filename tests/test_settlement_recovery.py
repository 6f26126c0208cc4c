"""Settlement resumes by itself after a fault: no RQ scheduler to wait for, no process
restarted by hand (issue 12, point 1). Real workers and reconciler processes, real MariaDB
behind a TCP forwarder the test cuts and restores."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

import pytest
from rq.job import Job, JobStatus

from ops.soak.tcp_proxy import TcpProxy
from tests.ledger import place_calls
from tests.test_cli import ASTERBILL
from tests.test_reconciler import cdr_count, no_drift
from workers.jobs import job_id, request_settlement, settle_queue
from workers.settle import read_ended

DEADLINE_S = 30  # a functional deadline: the goal is 15 s after the fault ends


@pytest.fixture
def mysql_proxy():
    proxy = TcpProxy(("127.0.0.1", 3306))
    yield proxy
    proxy.close()


def start(*args, environment):
    return subprocess.Popen(
        [ASTERBILL, *args],
        env={**os.environ, **environment},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(x) for x in out.stdout.split()]


def wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def test_a_retry_waiting_while_the_scheduler_is_killed_is_settled_once_mysql_is_back(
    ledger, fresh_mysql_url, key_prefix, mysql_proxy
):
    factory, credit, payer = ledger
    via_proxy = {
        "DATABASE_URL": fresh_mysql_url.replace(":3306/", f":{mysql_proxy.port}/"),
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "ASTERBILL_KEY_PREFIX": key_prefix,
    }
    place_calls(credit, payer, [30, 61, 125])
    queue = settle_queue(credit.client, credit.keys.prefix)
    mysql_proxy.down()
    worker = start("worker", environment=via_proxy)
    reconciler = None
    try:
        request_settlement(queue, payer.reseller_id)
        job = job_id(queue, payer.reseller_id)
        assert wait_for(
            lambda: Job.fetch(job, connection=credit.client).get_status() == JobStatus.SCHEDULED,
            DEADLINE_S,
        ), "the job never failed while MySQL was away"
        for child in children(worker.pid):  # RQ's scheduler process, where there is one
            os.kill(child, signal.SIGKILL)
        mysql_proxy.up()
        reconciler = start("reconcile", "--loop", "1", environment=via_proxy)

        settled = wait_for(lambda: cdr_count(factory) == 3, DEADLINE_S)

        assert settled, "settlement did not resume after MySQL came back"
        assert wait_for(lambda: read_ended(credit, payer.reseller_id) == [], 5)
        assert worker.poll() is None  # nobody restarted it
        assert no_drift(factory, credit)
    finally:
        stop(worker)
        if reconciler is not None:
            stop(reconciler)
