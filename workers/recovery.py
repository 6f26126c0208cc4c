"""Settlement jobs that recover by themselves, without RQ's scheduler process.

RQ's scheduler runs in a subprocess of a worker; it dies at a Redis outage and the worker
restarts it only at its 10-minute maintenance, so retries sat in the scheduled registry and
the job's unique id refused every new request meanwhile. Here nobody depends on it:
- `move_due` (each worker's maintenance, every few seconds, and the reconciler) enqueues the
  scheduled jobs whose time has come; a ZREM claims each one, so two movers never both do;
- a running job holds a lease (`JobLease`: a key refreshed every second by a thread of the
  job's process, which also keeps the job's entry in RQ's started registry fresh, so RQ never
  takes a slow but live job for abandoned); a job whose lease is gone on two passes of the
  reconciler (its worker was killed) is handed back to the queue at once;
- `recover` (the reconciler) puts back to work, per reseller with waiting calls, whatever
  holds its job id: scheduled (at once when MySQL answers again), failed, abandoned, or a
  job hash no queue or registry holds any more.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field

import redis
from rq import Queue, SimpleWorker
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

log = logging.getLogger("asterbill.recovery")

LEASE_TTL_S = 5
LEASE_EVERY_S = 1.0
ABANDONED_AFTER_S = 3.0  # lease missing this long (two passes): the worker is gone
STARTED_TTL_S = 60  # how far the lease pushes the job's started-registry expiry


def lease_key(queue: Queue, reseller_id: int) -> str:
    return f"rq:asterbill-lease:{queue.name}:r{reseller_id}"


class JobLease:
    """While a job runs: its lease key and its started-registry entry, refreshed every
    second by a daemon thread (it dies with the process; a Redis blink is retried)."""

    def __init__(self, queue: Queue, reseller_id: int, job_id: str | None) -> None:
        self.client = queue.connection
        self.key = lease_key(queue, reseller_id)
        self.job_id = job_id
        self.started = StartedJobRegistry(queue=queue).key
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="settle-lease", daemon=True)

    def __enter__(self) -> JobLease:
        self._refresh()
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=2)
        with contextlib.suppress(redis.RedisError):  # else it expires by itself
            self.client.delete(self.key)

    def _run(self) -> None:
        while not self.stop.wait(LEASE_EVERY_S):
            self._refresh()

    def _refresh(self) -> None:
        try:
            self.client.set(self.key, self.job_id or "", ex=LEASE_TTL_S)
            if self.job_id:
                expiry = time.time() + STARTED_TTL_S
                for member in _executions(self.client, self.started, self.job_id):
                    self.client.zadd(self.started, {member: expiry}, xx=True)
        except redis.RedisError:
            pass  # Redis away: the next refresh tries again


def _executions(client, registry_key: str, job_id: str) -> list[str]:
    """The started-registry members (`<job id>:<execution id>`) of one job."""
    return [
        m.decode() if isinstance(m, bytes) else m
        for m, _ in client.zscan_iter(registry_key, match=f"{job_id}:*")
    ]


def move_due(queue: Queue, everything: bool = False) -> int:
    """Enqueue the scheduled jobs of `queue` whose time has come (all of them with
    `everything`). Returns how many this call moved."""
    registry = ScheduledJobRegistry(queue=queue)
    until = 2**62 if everything else int(time.time())
    moved = 0
    for job_id in registry.get_jobs_to_schedule(until):
        if not queue.connection.zrem(registry.key, job_id):
            continue  # another mover claimed it
        job = Job.fetch_many([job_id], connection=queue.connection)[0]
        if job is None:
            continue
        queue.enqueue_job(job)
        moved += 1
    return moved


@dataclass
class Recovery:
    """The reconciler's memory between passes: since when each running job's lease is
    missing."""

    missing_since: dict[str, float] = field(default_factory=dict)

    def recover(self, queue: Queue, reseller_id: int, mysql_up: bool) -> str | None:
        """Put the reseller's job back to work if something holds it. Returns what was done
        (None: nothing was needed)."""
        job_id = _job_id(queue, reseller_id)
        job = Job.fetch_many([job_id], connection=queue.connection)[0]
        if job is None:
            return None
        status = job.get_status(refresh=False)
        client = queue.connection
        if status == JobStatus.STARTED:
            if client.exists(lease_key(queue, reseller_id)):
                self.missing_since.pop(job_id, None)
                return None
            first = self.missing_since.setdefault(job_id, time.monotonic())
            if time.monotonic() - first < ABANDONED_AFTER_S:
                return None
            self.missing_since.pop(job_id, None)
            _release(queue, job)
            return "abandoned"
        self.missing_since.pop(job_id, None)
        if status == JobStatus.SCHEDULED:
            registry = ScheduledJobRegistry(queue=queue)
            score = client.zscore(registry.key, job_id)
            if score is not None and not mysql_up and score > time.time():
                return None  # its retry is still ahead and MySQL may still be away
            if score is not None and not client.zrem(registry.key, job_id):
                return None  # a worker moved it just now
            queue.enqueue_job(job)
            return "scheduled"
        if status == JobStatus.FAILED:
            FailedJobRegistry(queue=queue).requeue(job)
            return "failed"
        if status == JobStatus.QUEUED and job_id.encode() not in client.lrange(queue.key, 0, -1):
            # a job hash no queue holds (a mover died halfway); on two passes, as a worker
            # may be taking it out of the queue right now
            first = self.missing_since.setdefault(f"queued:{job_id}", time.monotonic())
            if time.monotonic() - first < ABANDONED_AFTER_S:
                return None
            self.missing_since.pop(f"queued:{job_id}", None)
            queue.enqueue_job(job)
            return "lost"
        self.missing_since.pop(f"queued:{job_id}", None)
        if status in (JobStatus.FINISHED, JobStatus.STOPPED, JobStatus.CANCELED):
            job.delete()  # frees the unique id; the next request makes a new job
            return "finished"
        return None


def _release(queue: Queue, job: Job) -> None:
    """An abandoned job (its worker died mid-job): out of the started registry, back to
    the queue. The job is idempotent, so running it again is safe."""
    started = StartedJobRegistry(queue=queue)
    with queue.connection.pipeline() as pipe:
        for member in _executions(queue.connection, started.key, job.id):
            # the dead run's execution, gone from every index at once: a later run that
            # lists the job's executions must not meet a half-deleted one ("Execution ...
            # not found in Redis", seen after RQ's own abandoned-job retries)
            Execution.from_composite_key(member, queue.connection).delete(job, pipe)
        pipe.execute()
    queue.enqueue_job(job)
    log.warning("settlement job %s was abandoned (its worker died): requeued", job.id)


def _job_id(queue: Queue, reseller_id: int) -> str:
    from workers.jobs import job_id

    return job_id(queue, reseller_id)


class SettleWorker(SimpleWorker):
    """An RQ SimpleWorker that moves due retries itself at its maintenance (every few
    seconds instead of ten minutes), and retries Redis within a second after an outage."""

    max_connection_wait_time = 1.0

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("maintenance_interval", 3)
        kwargs.setdefault("worker_ttl", 20)  # waits 5 s per dequeue, then maintenance
        super().__init__(*args, **kwargs)

    def run_maintenance_tasks(self) -> None:
        super().run_maintenance_tasks()
        for queue in self.queues:
            moved = move_due(queue)
            if moved:
                log.info("%d due retries of %s enqueued", moved, queue.name)
