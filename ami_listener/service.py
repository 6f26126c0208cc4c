"""The listener process: one AMI connection (panoramisk), the call tracker, the biller and
the boundary scheduler, in one asyncio loop.

panoramisk 1.4 pitfalls handled here: the Manager is built inside the running loop (built
outside it never connects); event handlers are plain functions that only queue the event
with its receipt time (async handlers would be fired and forgotten, out of order); one
consumer handles the queue in order, and an exception in one event is logged with the call's
ids and never stops the others. Redis work runs in a worker thread so AMI reading never waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

import redis
from panoramisk import Manager

from ami_listener import policy
from ami_listener.ami_health import (
    EventWatcher,
    cdr_manager_warnings,
    command_warnings,
    manager_conf_warnings,
    parse_config,
)
from ami_listener.billing import Biller, HangupRequest
from ami_listener.tracker import Answered, CallTracker, Dialed, Ended
from ops.settings import Settings
from workers.jobs import request_settlement, settle_queue

log = logging.getLogger("asterbill.listener")
RESYNC = "asterbill:resync"  # a queue item that is not an AMI event
MAX_SLEEP_S = 0.5  # wake at least this often to pick up new calls' boundaries
RETRY_FIRST_S, RETRY_MAX_S = 0.1, 5.0  # backoff while Redis does not answer
SETTLE_REQUEST_S = 0.5  # how often ended calls are handed to settlement


@dataclass
class Stats:
    events: int = 0
    errors: int = 0
    hangups_sent: int = 0
    hangups_failed: int = 0  # not sent (AMI down), not answered in time, or refused
    retries: int = 0
    # How late the scheduler woke for a boundary (ms after due - guard), and how long a
    # Hangup took from the cut to Asterisk's answer; the last samples only, for benchmarks.
    wake_lag_ms: deque = field(default_factory=lambda: deque(maxlen=100_000))
    hangup_lag_ms: deque = field(default_factory=lambda: deque(maxlen=100_000))


class AmiUnavailable(ConnectionError):
    """An AMI action was not sent, or not answered, on the connection it was made for."""


class BackoffManager(Manager):
    """panoramisk's Manager with the changes that keep billing safe across reconnects.

    Actions live and die with their connection. panoramisk keeps every action a lost
    connection did not answer (and every action sent while it was down) and sends them after
    the next login; channel names restart with Asterisk, so a stale `Hangup` then kills
    another booth's call. Here an action is sent only while logged in, fails with
    AmiUnavailable at once otherwise, and fails the same way when its connection is lost:
    nothing is ever resent. The caller decides again with what it knows then. Every action
    fails with TimeoutError when Asterisk does not answer in time (a login: the connection
    is closed and retried).

    Reconnect waits. Losing a connection that was logged in, or an Asterisk that is down
    (restarting, killed, not started yet), retries fast: FAST_STEP_S more at each attempt,
    with jitter, at most FAST_MOST_S, so billing is blind for seconds at most. A refused
    login (wrong user or secret) is not fixed by retrying: those waits double from
    SLOW_FIRST_S up to SLOW_MOST_S until a login succeeds. `delays` records each choice."""

    FAST_STEP_S, FAST_MOST_S, JITTER = 0.5, 3.0, 0.2
    SLOW_FIRST_S, SLOW_MOST_S = 1.0, 30.0

    def __init__(self, **config) -> None:
        super().__init__(**config)
        self.closed = False
        self.ready = False  # logged in on a connection that is up: actions may be sent
        self.logins = 0
        self.shutdowns = 0  # Shutdown events: Asterisk stopping or restarting
        self.dropped_actions = 0  # actions failed because their connection was lost
        self.attempts: list[float] = []  # monotonic time of each connection attempt
        self.delays: list[tuple[str, float]] = []  # ("fast" | "refused", wait before retry)
        self._failures = 0  # attempts since the last login
        self._refused = False  # the last login was refused: wait long
        self._refused_wait = 0.0
        self._random = random.Random()
        self.reconnect_timeout = self.FAST_STEP_S  # panoramisk keeps it an int
        self.action_timeout_s = float(config.get("action_timeout_s", 5.0))

    def close(self) -> None:
        self.closed = True  # panoramisk's own close() leaves its retry loop running
        self.ready = False
        super().close()
        self._fail_awaiting("the listener closed its AMI connection")

    def connect(self, *args, **kwargs):
        if self.closed:
            return None
        self.attempts.append(time.monotonic())
        if len(self.attempts) > 1:
            log.info("AMI connection attempt %d", len(self.attempts))
        return super().connect(*args, **kwargs)

    def connection_made(self, f):
        self.ready = False
        if not f.cancelled() and f.exception() is not None:
            self._plan_retry()  # panoramisk waits reconnect_timeout, then connects again
        result = super().connection_made(f)
        if not f.cancelled() and f.exception() is None:
            self.loop.call_later(self.action_timeout_s, self._login_deadline, self.protocol)
        return result

    def login(self, future):
        ok = super().login(future)
        if ok:
            self.ready = True
            self.logins += 1
            self._failures, self._refused, self._refused_wait = 0, False, 0.0
        else:
            log.error("Asterisk refused the AMI login of user %r", self.config.get("username"))
            self._refused = True
        return ok

    def connection_lost(self, exc):
        if isinstance(exc, Mapping) and exc.get("Event") == "Shutdown":
            self.shutdowns += 1
            log.warning("Asterisk is shutting down (restart: %s)", exc.get("Restart", "?"))
        self.ready = False
        self._fail_awaiting("the AMI connection was lost before Asterisk answered")
        if self.closed:
            return None
        self._plan_retry()
        return super().connection_lost(exc)

    async def send_awaiting_actions(self, *_):
        """panoramisk resends the actions of a lost connection after a login: never."""
        self._fail_awaiting("the AMI connection was lost before Asterisk answered")

    def send_action(self, action, as_list=None, timeout_s: float | None = None, **kwargs):
        """panoramisk's send_action, refused unless logged in, and failed with TimeoutError
        when Asterisk does not answer within `timeout_s` (default: action_timeout_s)."""
        name = str(action.get("Action", action.get("action", ""))).lower()
        if name != "login" and not self.ready:
            future = asyncio.get_running_loop().create_future()
            future.set_exception(AmiUnavailable(f"{name} not sent: not logged in to Asterisk"))
            return future
        future = super().send_action(action, as_list=as_list, **kwargs)
        if name != "login":  # the login has its own deadline (connection_made)
            wait = self.action_timeout_s if timeout_s is None else timeout_s
            timer = self.loop.call_later(wait, self._expire, future, self.protocol, name, wait)
            future.add_done_callback(lambda _: timer.cancel())
        return future

    @staticmethod
    def _expire(future: asyncio.Future, protocol, name: str, wait: float) -> None:
        if future.done():
            return
        future.set_exception(TimeoutError(f"{name}: Asterisk did not answer in {wait:g} s"))
        future.add_done_callback(_retrieve)
        for key, pending in list(getattr(protocol, "responses", {}).items()):
            if pending.future is future:  # a late answer then finds nothing to complete
                protocol.responses.pop(key, None)

    def _login_deadline(self, protocol) -> None:
        """A connection whose login Asterisk never answers is closed (and retried)."""
        if protocol is self.protocol and not self.ready and not protocol.closed:
            log.error("Asterisk did not answer the AMI login in %g s", self.action_timeout_s)
            protocol.transport.close()

    def _fail_awaiting(self, why: str) -> None:
        while self.awaiting_actions:
            action = self.awaiting_actions.popleft()
            self.dropped_actions += 1
            if not action.future.done():
                action.future.set_exception(AmiUnavailable(f"{action.get('Action')}: {why}"))
                action.future.add_done_callback(_retrieve)

    def _plan_retry(self) -> None:
        self._failures += 1
        if self._refused:
            doubled = min(self.SLOW_MOST_S, self._refused_wait * 2)
            self._refused_wait = doubled or self.SLOW_FIRST_S
            kind, wait = "refused", self._refused_wait
        else:
            step = min(self.FAST_MOST_S, self.FAST_STEP_S * self._failures)
            kind, wait = "fast", step * self._random.uniform(1 - self.JITTER, 1 + self.JITTER)
        self.reconnect_timeout = wait
        self.delays.append((kind, wait))


def _retrieve(future: asyncio.Future) -> None:
    """Mark a failed future's exception as seen (its waiter may have timed out already)."""
    if not future.cancelled():
        future.exception()


def channel_of(request: HangupRequest) -> str:
    """What a Hangup names: the call's Uniqueid (`<uniqueid>:a`, `<uniqueid>#2` are calls on
    that channel). Asterisk 20's Hangup takes a Uniqueid in its Channel header; channel names
    are reused after a restart, uniqueids are not."""
    return request.call_id.partition(":")[0].partition("#")[0] or request.channel


@dataclass(frozen=True)
class OriginateResult:
    answered: bool  # leg A answered (Asterisk's OriginateResponse: Success)
    uniqueid: str  # leg A's channel
    reason: str  # Asterisk's Reason code (4 answered, 1 no answer, 5 busy, ...) or a message


class Listener:
    def __init__(self, settings: Settings, biller: Biller) -> None:
        self.settings = settings
        self.biller = biller
        self.tracker = CallTracker(
            payer_field=settings.payer_field,
            callback_legs=settings.callback_legs,
            clock=biller.clock,  # one view of Asterisk's clock: the tracker's and the biller's
        )
        self.stats = Stats()
        self.queue: asyncio.Queue = asyncio.Queue()
        self.manager: Manager | None = None
        self.wake = asyncio.Event()
        self.logged_in = asyncio.Event()
        self.hangups: list[HangupRequest] = []  # every hang-up asked for (tests read it)
        self._tasks: set[asyncio.Task] = set()
        self._hangup_tasks: set[asyncio.Task] = set()
        self._hanging_up: set[str] = set()  # channels (uniqueids) with a Hangup in flight
        self.received = 0  # receive sequence number of the last event queued
        # Steps Redis could not take, in order, with the time (monotonic) of their first
        # try; a call with a step here has all its later steps put here too.
        self.deferred: deque[tuple[object, float]] = deque()
        self._deferred_calls: dict[str, int] = {}  # call id -> its steps in `deferred`
        self._retry_delay = RETRY_FIRST_S
        self.resyncs = 0

    # -- AMI side ----------------------------------------------------------------------
    def _on_event(self, _manager, message) -> None:
        """panoramisk callback: queue only (keeps order; no work in the reader)."""
        self.received += 1
        self.queue.put_nowait((self.received, time.time_ns() // 1000, dict(message)))

    def _on_login(self, _manager) -> None:
        log.info("logged in to AMI at %s:%d", self.settings.ami_host, self.settings.ami_port)
        self.logged_in.set()
        task = asyncio.ensure_future(self._ask_channels())
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.stats.errors += 1
            log.error("resync failed", exc_info=task.exception())

    async def _ask_channels(self) -> None:
        """After every login: which channels are up? Queued behind the events already
        received, so the resync sees the calls in the same order as everything else."""
        asked_at = self.received
        reply = await self.manager.send_action({"Action": "CoreShowChannels"}, as_list=True)
        messages = reply if isinstance(reply, list) else [reply]
        live = {m.get("Uniqueid", "") for m in messages if m.get("Event") == "CoreShowChannel"}
        self.queue.put_nowait(
            (
                self.received,
                time.time_ns() // 1000,
                {"Event": RESYNC, "live": live, "asked_at": asked_at},
            )
        )

    async def connect(self) -> None:
        self.manager = BackoffManager(
            loop=asyncio.get_running_loop(),
            host=self.settings.ami_host,
            port=self.settings.ami_port,
            username=self.settings.ami_user,
            secret=self.settings.ami_secret,
            ping_delay=10,
            on_login=self._after_login,
            action_timeout_s=self.settings.ami_timeout_ms / 1000,
        )
        self.manager.register_event("*", self._on_event)
        self.ami_warnings: list[str] = []  # what the AMI user lacks for billing (logged)
        self.ami_watcher = EventWatcher()
        self.manager.register_event("*", self._watch_ami)
        # Not awaited: when Asterisk is down at start the first attempt fails, and awaiting
        # it would end the listener; panoramisk retries by itself (with our backoff).
        self.manager.connect()

    def close(self) -> None:
        if self.manager is not None:
            self.manager.close()

    def _after_login(self, manager) -> None:
        self.ami_watcher = EventWatcher()  # Asterisk's settings may have changed meanwhile
        self._on_login(manager)
        task = asyncio.ensure_future(self._check_ami())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _warn_ami(self, warnings: list[str]) -> None:
        for warning in warnings:
            log.warning("AMI: %s", warning)
            self.ami_warnings.append(warning)

    def _watch_ami(self, _manager, message) -> None:
        self._warn_ami(self.ami_watcher.observe(message))

    async def _check_ami(self) -> None:
        """At each login: what manager.conf, cdr_manager.conf (GetConfig, when the user may
        read them) and ListCommands say the AMI user lacks for billing. Warnings only."""
        user, found = self.settings.ami_user, []
        try:
            conf = await self.action({"Action": "GetConfig", "Filename": "manager.conf"})
            if conf.get("Response") == "Success":
                found += manager_conf_warnings(parse_config(conf), user)
                cdr = await self.action({"Action": "GetConfig", "Filename": "cdr_manager.conf"})
                if cdr.get("Response") == "Success":
                    found += cdr_manager_warnings(parse_config(cdr))
            commands = await self.action({"Action": "ListCommands"})
            found += command_warnings(commands, user)
        except (AmiUnavailable, TimeoutError) as exc:
            log.info("AMI settings check skipped: %r", exc)
        except Exception:
            log.warning("AMI settings check failed", exc_info=True)  # billing goes on
        self._warn_ami([w for w in dict.fromkeys(found) if w not in self.ami_warnings])

    async def action(self, action: dict, timeout_s: float | None = None, as_list=None):
        """Send one AMI action on the current connection and wait for its answer, at most
        `timeout_s` (default ASTERBILL_AMI_TIMEOUT_MS). Raises AmiUnavailable when not
        logged in or when the connection is lost first, TimeoutError when Asterisk does not
        answer in time; a failed action is never sent again by itself."""
        if self.manager is None:
            raise AmiUnavailable(f"{action.get('Action')} not sent: not connected to AMI")
        return await self.manager.send_action(action, as_list=as_list, timeout_s=timeout_s)

    async def hang_up(self, request: HangupRequest) -> None:
        """Ask Asterisk to hang up the request's call, by its Uniqueid, without waiting for
        the answer: the boundary scheduler and the event consumer go on at once."""
        self.hangups.append(request)
        target = channel_of(request)
        log.warning(
            "hanging up %s (%s, call %s): %s",
            request.channel,
            target,
            request.call_id,
            request.reason,
        )
        if self.manager is None or target in self._hanging_up:
            return  # one Hangup of a channel at a time is enough
        self._hanging_up.add(target)
        task = asyncio.ensure_future(self._send_hangup(request, target))
        self._hangup_tasks.add(task)
        task.add_done_callback(self._hangup_tasks.discard)

    async def _send_hangup(self, request: HangupRequest, target: str) -> None:
        started = time.monotonic()
        try:
            reply = await self.action({"Action": "Hangup", "Channel": target, "Cause": "16"})
            self.stats.hangups_sent += 1
            self.stats.hangup_lag_ms.append((time.monotonic() - started) * 1000)
            log.info(
                "Hangup %s (%s): %s", target, request.channel, getattr(reply, "Message", reply)
            )
        except (AmiUnavailable, TimeoutError) as exc:
            # Not resent: after a reconnect the resync decides again on the live calls.
            self.stats.hangups_failed += 1
            log.error("Hangup of %s (call %s) failed: %r", target, request.call_id, exc)
        except Exception:
            self.stats.hangups_failed += 1
            log.exception("Hangup of %s (call %s) failed", target, request.call_id)
        finally:
            self._hanging_up.discard(target)

    async def originate_callback(
        self, a_number: str, b_number: str, caller_id: str, account: str = "", timeout: float = 60
    ) -> OriginateResult:
        """Place a callback: ring `a_number` (leg A, the customer); when answered, the
        `callback` dialplan context dials `b_number` (leg B). The legs are then followed and
        billed like any call (ASTERBILL_CALLBACK_LEGS).

        panoramisk pitfall: the OriginateResponse event carries the action's ActionID, so
        panoramisk hands it to the action's future (a list: the "queued" response, then the
        event) and never to the event handlers. The result is therefore read from that list."""
        reply = await self.action(
            {
                "Action": "Originate",
                "Channel": self.settings.callback_channel.replace("{number}", a_number),
                "Context": self.settings.callback_context,
                "Exten": b_number,
                "Priority": "1",
                "CallerID": f"<{caller_id}>",
                "Account": account,
                "Async": "true",
            },
            timeout_s=timeout,
        )
        messages = reply if isinstance(reply, list) else [reply]
        event = next((m for m in messages if m.get("Event") == "OriginateResponse"), None)
        if event is None:  # refused at once (Response: Error)
            return OriginateResult(False, "", messages[0].get("Message", "refused"))
        ok = event.get("Response") == "Success"
        return OriginateResult(ok, event.get("Uniqueid", ""), event.get("Reason", ""))

    # -- work ----------------------------------------------------------------------------
    async def consume(self) -> None:
        """Handle queued events in order; one bad event never stops the others."""
        while True:
            if self.deferred:
                await self._drain_deferred()
                try:
                    item = await asyncio.wait_for(self.queue.get(), timeout=self._retry_delay)
                except TimeoutError:
                    continue
            else:
                item = await self.queue.get()
            seq, received_us, event = item
            self.stats.events += 1
            try:
                if event.get("Event") == RESYNC:
                    await self._resync(event["live"], received_us, event["asked_at"])
                    continue
                for step in self.tracker.feed(event, received_us):
                    step.call.seen_at = step.call.seen_at or seq
                    request = await self._bill_until_done(step)
                    if isinstance(step, Answered):
                        self.wake.set()
                    if request is not None:
                        await self.hang_up(request)
            except Exception:
                self.stats.errors += 1
                log.exception(
                    "event %s of channel %s (uniqueid %s) failed",
                    event.get("Event"),
                    event.get("Channel"),
                    event.get("Uniqueid"),
                )
            finally:
                self.queue.task_done()

    async def _resync(self, live: set[str], now_us: int, asked_at: int) -> None:
        for step in self.tracker.resync(live, now_us, asked_at):
            log.warning(
                "call %s ended while AMI was disconnected: ended at the reconnect",
                step.call.call_id,
            )
            await asyncio.to_thread(self._bill, step)
        known = set(self.tracker.calls)
        adopted = await asyncio.to_thread(self.biller.orphans, live, known, now_us // 1000)
        for call in adopted:
            self.tracker.adopt(call)
        self.resyncs += 1
        self.wake.set()

    async def _bill_until_done(self, step) -> HangupRequest | None:
        """Bill one step. Redis unreachable: the credit-failure policy decides
        (ami_listener/policy.py): a dial is refused at once (terminate), after retrying up to
        RETRY_WINDOW_S (retry_and_terminate), or let through (continue); any other step (and
        a dial let through) is kept in `deferred`, in order per call, and applied when Redis
        answers again (the steps are idempotent). The queue is never held: other calls'
        events, and their refusals, go on."""
        call = step.call
        if call.call_id in self._deferred_calls:
            self._defer(step, time.monotonic())
            return None
        started = time.monotonic()
        delay = RETRY_FIRST_S
        while True:
            try:
                return await asyncio.to_thread(self._bill, step)
            except policy.UNREACHABLE as exc:
                self.stats.retries += 1
                failure = self.biller.failure
                waited = time.monotonic() - started
                if isinstance(step, Dialed) and failure.cuts:
                    if waited + delay <= failure.grace_ms / 1000:
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, RETRY_MAX_S)
                        continue
                    return self.biller.refuse_unavailable(call)
                log.warning(
                    "Redis unreachable while billing call %s (%s); kept for later (%s)",
                    call.call_id,
                    exc,
                    failure,
                )
                if isinstance(step, Answered):
                    self.biller.answer_unavailable(call)
                    self.wake.set()  # the scheduler's next local cut may be this call
                self._defer(step, started)
                return None

    def _defer(self, step, since: float) -> None:
        self.deferred.append((step, since))
        call_id = step.call.call_id
        self._deferred_calls[call_id] = self._deferred_calls.get(call_id, 0) + 1

    async def _drain_deferred(self) -> None:
        """Apply the kept steps in order while Redis answers; stop at the first that fails
        (retried after a growing delay). A dial let through that was answered meanwhile is
        billed blind (it went on without a check); a hang-up is asked for only if the call
        is still up."""
        while self.deferred:
            step, _since = self.deferred[0]
            call = step.call
            try:
                if isinstance(step, Dialed):
                    # Still ringing: Redis is back in time to decide as usual.
                    blind = call.answered_us is not None or call.ended_us is not None
                    request = await asyncio.to_thread(self.biller.on_dialed, call, blind)
                else:
                    request = await asyncio.to_thread(self._bill, step)
            except policy.UNREACHABLE:
                self.stats.retries += 1
                self._retry_delay = min(self._retry_delay * 2, RETRY_MAX_S)
                return
            except Exception:
                self.stats.errors += 1
                log.exception("kept step of call %s failed", call.call_id)
                request = None
            self.deferred.popleft()
            left = self._deferred_calls[call.call_id] - 1
            if left:
                self._deferred_calls[call.call_id] = left
            else:
                del self._deferred_calls[call.call_id]
            if isinstance(step, Answered):
                self.wake.set()
            if request is not None and call.ended_us is None:
                await self.hang_up(request)
        self._retry_delay = RETRY_FIRST_S

    def _bill(self, step) -> HangupRequest | None:
        if isinstance(step, Dialed):
            return self.biller.on_dialed(step.call)
        if isinstance(step, Answered):
            return self.biller.on_answered(step.call)
        if isinstance(step, Ended):
            self.biller.on_ended(step.call)
        return None

    async def schedule(self) -> None:
        """Wake for block boundaries only: at the next due time minus the guard time. Never
        waits on AMI: a cut only starts its Hangup (see hang_up).

        `stats.wake_lag_ms` records how long after that moment the boundaries were paid."""
        intended_ms = None
        while True:
            try:
                requests, next_due = await asyncio.to_thread(
                    self.biller.tick, time.time_ns() // 1_000_000
                )
                if intended_ms is not None:
                    self.stats.wake_lag_ms.append(max(0, time.time_ns() // 1_000_000 - intended_ms))
                for request in requests:
                    await self.hang_up(request)
            except Exception:
                self.stats.errors += 1
                log.exception("boundary scheduler failed; retrying")
                next_due = -1
            now_ms = time.time_ns() // 1_000_000
            sleep, intended_ms = MAX_SLEEP_S, None
            if next_due >= 0:
                wake_ms = next_due - self.settings.guard_ms
                if wake_ms - now_ms <= MAX_SLEEP_S * 1000:
                    sleep, intended_ms = max(0.0, (wake_ms - now_ms) / 1000), max(wake_ms, now_ms)
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=sleep)
            if self.wake.is_set():
                intended_ms = None  # woken early for a new call, not for a boundary

    async def request_settlements(self) -> None:
        """Every SETTLE_REQUEST_S, one settlement job request per reseller whose calls ended
        meanwhile (coalesced: the job settles every waiting call of the reseller). A request
        lost here is made again by the reconciler's sweep."""
        queue = settle_queue(self.biller.engine.client, self.settings.key_prefix)
        while True:
            await asyncio.sleep(SETTLE_REQUEST_S)
            resellers, self.biller.to_settle = self.biller.to_settle, set()
            try:
                for reseller_id in sorted(resellers):
                    await asyncio.to_thread(request_settlement, queue, reseller_id)
                    resellers.discard(reseller_id)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("settlement request delayed: %s", exc)
                self.biller.to_settle |= resellers

    async def run(self) -> None:
        await self.connect()
        from ami_listener.commands import CommandReader  # hang-ups from the booth page

        await asyncio.gather(
            self.consume(), self.schedule(), self.request_settlements(), CommandReader(self).run()
        )
