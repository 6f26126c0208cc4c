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
from panoramisk import Manager, actions

from ami_listener import policy
from ami_listener.ami_health import (
    EventWatcher,
    cdr_manager_warnings,
    command_warnings,
    manager_conf_warnings,
    parse_config,
)
from ami_listener.billing import Biller, HangupRequest
from ami_listener.frames import timestamp_us
from ami_listener.resync_record import record_resync
from ami_listener.tracker import BOOTH_APPS, Answered, CallTracker, Dialed, Ended
from ops.settings import Settings
from workers.jobs import request_settlement, settle_queue

log = logging.getLogger("asterbill.listener")
RESYNC = "asterbill:resync"  # queue items that are not AMI events: a login's snapshot,
LOST = "asterbill:lost"  # the AMI connection lost,
FLUSH = "asterbill:flush"  # time to end the hung-up calls whose Cdr did not come
RESYNC_ACTION_S = 10.0  # at most this long for CoreShowChannels and each Getvar
FLUSH_EVERY_S = 0.2
GETVAR_AT_ONCE = 50
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


class SnapshotAction(actions.Action):
    """CoreShowChannels whose reply marks its place among the events: panoramisk hands the
    list to the action's future (resolved later, after the rest of that TCP read has gone
    to the event handlers), so the place is taken here, synchronously, when the first reply
    message (the Response) is parsed: every event queued before it happened before the
    listing; every event after it is applied after the snapshot."""

    def __init__(self, on_reply, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._on_reply = on_reply

    def add_message(self, message):
        if not self.responses:
            self._on_reply()
            if message.get("Response") == "Error":  # (panoramisk would wait for a list)
                self.responses.append(message)
                self.future.set_result([message])
                return True
        return super().add_message(message)


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
        self.tracker.cdr_wait_us = settings.cdr_wait_ms * 1000
        # Events after a snapshot's place wait here until the snapshot is applied.
        self.barrier: int | None = None
        self.held: deque = deque()
        self._snapshot_task: asyncio.Task | None = None
        # From a lost connection until the next snapshot is applied, cuts wait here: a call
        # of the lost session is hung up only once Asterisk still lists it (after a restart
        # the same Uniqueid-named Hangup would go to an Asterisk that never had the call),
        # and a cut asked for while no Hangup could be sent is not lost.
        self.cuts_held = False
        self.held_cuts: dict[str, HangupRequest] = {}

    # -- AMI side ----------------------------------------------------------------------
    def _on_event(self, _manager, message) -> None:
        """panoramisk callback: queue only (keeps order; no work in the reader)."""
        self.received += 1
        self.queue.put_nowait((self.received, time.time_ns() // 1000, dict(message)))

    def _queue_item(self, name: str, **fields) -> None:
        self.received += 1
        self.queue.put_nowait((self.received, time.time_ns() // 1000, {"Event": name, **fields}))

    def _on_disconnect(self, manager, exc) -> None:
        """The connection is gone: its place in the stream is the end of every call that
        the next snapshot no longer lists. A snapshot still being read is dropped (the
        events held behind it are released in order)."""
        self._queue_item(LOST)
        self.cuts_held = True
        if self._snapshot_task is not None and not self._snapshot_task.done():
            self._snapshot_task.cancel()
            self._queue_item(RESYNC, failed=True)
        previous = getattr(self, "_previous_on_disconnect", None)
        if previous is not None:
            previous(manager, exc)

    def _watch_disconnects(self, manager) -> None:
        if manager.on_disconnect != self._on_disconnect:
            self._previous_on_disconnect = manager.on_disconnect
            manager.on_disconnect = self._on_disconnect

    def _on_login(self, _manager) -> None:
        log.info("logged in to AMI at %s:%d", self.settings.ami_host, self.settings.ami_port)
        self.logged_in.set()
        self._watch_disconnects(_manager)
        task = self._snapshot_task = asyncio.ensure_future(self._ask_channels())
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.stats.errors += 1
            log.error("resync failed", exc_info=task.exception())

    async def _ask_channels(self) -> None:
        """After every login: which channels are up, and since when were the booths among
        them answered? The snapshot is applied at its exact place among the events (see
        SnapshotAction); the answer times come from Asterisk's CDR (`CDR(answer,u)`)."""
        action = SnapshotAction(self._mark_snapshot, {"Action": "CoreShowChannels"})
        try:
            reply = await asyncio.wait_for(
                self.manager.send_action(action, as_list=True), RESYNC_ACTION_S
            )
        except Exception:
            self._queue_item(RESYNC, failed=True)  # releases the held events
            raise
        messages = reply if isinstance(reply, list) else [reply]
        if messages and messages[0].get("Response") == "Error":
            # e.g. the AMI user may not write `system`: without a list nothing is judged
            log.error("CoreShowChannels refused: %s", messages[0].get("Message"))
            self._queue_item(RESYNC, failed=True)
            return
        channels = [dict(m) for m in messages if m.get("Event") == "CoreShowChannel"]
        # Answer times only of the answered booths nobody follows (the ones to adopt), at
        # most GETVAR_AT_ONCE in flight: the events behind the snapshot wait for them.
        wanted = [
            c
            for c in channels
            if c.get("Application") in BOOTH_APPS
            and c.get("BridgeId")
            and not self.tracker.calls_of(c.get("Uniqueid", ""))
        ]
        limit = asyncio.Semaphore(GETVAR_AT_ONCE)

        async def answer_time(channel: dict) -> int | None:
            async with limit:
                return await self._answer_time(channel)

        times = await asyncio.gather(*(answer_time(c) for c in wanted))
        answers = {c["Uniqueid"]: t for c, t in zip(wanted, times, strict=True)}
        self._queue_item(RESYNC, channels=channels, answers=answers)

    def _mark_snapshot(self) -> None:
        self.barrier = self.received

    async def _answer_time(self, channel: dict) -> int | None:
        """Asterisk's answer time of a live channel (epoch microseconds), or None."""
        try:
            reply = await asyncio.wait_for(
                self.manager.send_action(
                    {
                        "Action": "Getvar",
                        "Channel": channel["Uniqueid"],
                        "Variable": "CDR(answer,u)",
                    }
                ),
                RESYNC_ACTION_S,
            )
        except Exception as exc:
            log.warning("no answer time for %s: %s", channel.get("Channel"), exc)
            return None
        value = str(reply.get("Value") or "").strip() if hasattr(reply, "get") else ""
        # `u`: epoch seconds with microseconds, as the Timestamp header; 0 / empty: not
        # answered, or a value we cannot read: then the call is billed from now, flagged.
        answered = timestamp_us({"Timestamp": value})
        return answered or None

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
        if self.cuts_held:  # between a lost connection and the next resync (_release_cuts)
            self.held_cuts[request.call_id] = request  # asked for again if still up then
            if getattr(self.manager, "ready", False):
                return  # logged in again: only once the snapshot shows the call still up
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
        """Handle queued events in order; one bad event never stops the others. Events that
        came after a snapshot's place wait until that snapshot is applied."""
        while True:
            if self.deferred:
                await self._drain_deferred()
                try:
                    item = await asyncio.wait_for(self.queue.get(), timeout=self._retry_delay)
                except TimeoutError:
                    continue
            else:
                item = await self.queue.get()
            if self.barrier is not None and item[0] > self.barrier:
                if item[2].get("Event") != RESYNC:
                    self.held.append(item)  # task_done once handled
                    continue
                self.barrier = None
                await self._handle(item)
                while self.held and self.barrier is None:
                    await self._handle(self.held.popleft())
                continue
            await self._handle(item)

    async def _handle(self, item) -> None:
        seq, received_us, event = item
        self.stats.events += 1
        try:
            name = event.get("Event")
            if name == RESYNC:
                if not event.get("failed"):
                    await self._resync(event["channels"], event["answers"], received_us)
                await self._release_cuts()
                return
            if name == LOST:
                steps = self.tracker.lost(received_us)
            elif name == FLUSH:
                steps = self.tracker.flush(received_us)
            else:
                steps = self.tracker.feed(event, received_us)
            await self._bill_steps(steps, seq)
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

    async def _bill_steps(self, steps, seq: int) -> None:
        for step in steps:
            step.call.seen_at = step.call.seen_at or seq
            if step.call.review and not isinstance(step, Dialed):
                log.warning("call %s: %s", step.call.call_id, step.call.review)
            request = await self._bill_until_done(step)
            if isinstance(step, Answered):
                self.wake.set()
            if request is not None and step.call.ended_us is None:  # gone calls: no cut
                await self.hang_up(request)

    async def _release_cuts(self) -> None:
        """After a snapshot (or a failed one, once logged in again): the held cuts of calls
        still followed are sent; those of calls that ended meanwhile are dropped."""
        if not getattr(self.manager, "ready", True):
            return  # the snapshot of a lost session: hold on until the next one
        self.cuts_held = False
        held, self.held_cuts = self.held_cuts, {}
        for request in held.values():
            if request.call_id in self.tracker.calls:
                await self.hang_up(request)

    async def flush_ended(self) -> None:
        """Every FLUSH_EVERY_S while calls wait for their Cdr: a queue item that ends those
        waiting too long (in order with the events); and the listener's heartbeat."""
        while True:
            await asyncio.sleep(FLUSH_EVERY_S)
            if self.tracker.ending:
                self._queue_item(FLUSH)
            if self.resyncs:  # not before the first resync read the last one's heartbeat
                with contextlib.suppress(redis.RedisError):
                    await asyncio.to_thread(self.biller.heartbeat, time.time_ns() // 1_000_000)

    async def _resync(self, channels: list[dict], answers: dict, received_us: int) -> None:
        """Calls Redis bills that this process does not follow (it restarted) are adopted
        or ended first; then the tracker applies the snapshot (ends the calls gone, adopts
        the booth channels nobody knows)."""
        live = {c.get("Uniqueid", "") for c in channels}
        known = set(self.tracker.calls) | set(self.tracker.ending)
        delay = RETRY_FIRST_S
        while True:  # Redis unreachable: hold the queue and retry, as for any step
            try:
                adopted = await asyncio.to_thread(
                    self.biller.orphans, live, known, received_us // 1000
                )
                await asyncio.to_thread(self.biller.stale_dialled, live, known, received_us // 1000)
                break
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                self.stats.retries += 1
                log.warning("Redis unreachable at the resync (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
        for call in adopted:
            self.tracker.adopt(call)
        steps = self.tracker.resync(channels, answers, received_us)
        await self._bill_steps(steps, self.received)
        # what Asterisk listed, for `reconcile --check` to find calls Redis still bills
        # that Asterisk no longer has (a lost record is only a missing check: never fatal)
        engine = self.biller.engine
        with contextlib.suppress(redis.RedisError):
            await asyncio.to_thread(
                record_resync, engine.client, engine.keys, live, received_us // 1000
            )
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
            self.biller.closed(step.call)
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
            self.consume(),
            self.schedule(),
            self.request_settlements(),
            self.flush_ended(),
            CommandReader(self).run(),
        )
