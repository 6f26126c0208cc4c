"""A simulated Asterisk: the AMI protocol over TCP, for demos, tests and load.

Two sources of calls:
- replay: the events of a real capture (tests/data/ami-captures/*.jsonl), at their recorded
  pace scaled by `speed`, with `Timestamp` headers moved onto the replay's own clock,
  optionally with random delivery jitter; it starts when a client has logged in, and a
  capture of two AMI sessions (24-26) is replayed as two: between them the connection is
  dropped (and after an Asterisk restart every channel is forgotten and `Uptime` starts
  again), and the next session begins when a client has logged in again, with the channels
  its recorded CoreShowChannels listed;
- generator: SIP booth calls whose event sequences follow the SIP captures (Newchannel,
  Newstate, DialBegin, DialEnd, BridgeEnter/Leave, Hangup, Cdr). It obeys the Hangup action.

Both answer Login (one user and secret; a wrong secret waits, answers Error and closes, as
Asterisk does), Ping, Hangup, CoreShowChannels (the channels alive right now, with
`Application` and `BridgeId`), Getvar (`CDR(answer,u)`: the answer time), Logoff and
Originate: `Channel: Local/<A number>@...`, `Context: callback`, `Exten: <B number>` places a
callback as capture 08 shows it (leg A rung and answered, an OriginateResponse carrying the
action's ActionID, then leg A dials leg B); `Variable: A_RING_SECS=..,B_RING_SECS=..,
B_TALK_SECS=..` sets its times. Hangup takes a channel name or, as Asterisk 20 does, a
Uniqueid in its Channel header.

Faults, for tests and soaks (methods of AmiServer; signals of `asterbill pbx-sim`):
- kill() / come_back(): Asterisk killed (every client dropped, no Hangup or Cdr for the calls
  that were up, nothing listens) and started again;
- restart(clean=...): the same, or a `core restart now` (every call hung up with its Hangup
  and Cdr, then `Event: Shutdown`); either way the Asterisk that comes back starts its
  channel counters again, so new calls reuse the channel names of the calls before it;
- drop_client(): one client's TCP connection cut while the calls go on;
- unanswered: action names (lower case) the simulator reads and never answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ami_listener import frames
from ami_listener.ami_health import classes
from ami_listener.tracker import hms_seconds

log = logging.getLogger("asterbill.pbx_sim")
GREETING = b"Asterisk Call Manager/9.0.0\r\n"
SNAPSHOT = (
    "Channel",
    "ChannelState",
    "ChannelStateDesc",
    "CallerIDNum",
    "CallerIDName",
    "ConnectedLineNum",
    "ConnectedLineName",
    "Language",
    "AccountCode",
    "Context",
    "Exten",
    "Priority",
    "Uniqueid",
    "Linkedid",
)
STATES = {"Down": "0", "Ring": "4", "Ringing": "5", "Up": "6"}
# action -> the write classes that allow it (any one), as Asterisk 20 registers them
ACTION_CLASSES = {
    "Hangup": ("system", "call"),
    "CoreShowChannels": ("system", "reporting"),
    "Getvar": ("call", "reporting"),
    "Originate": ("originate",),
    "GetConfig": ("system", "config"),
}
_ACTION_BY_LOWER = {name.lower(): name for name in ACTION_CLASSES}


class Killed(Exception):
    """The simulated Asterisk was killed: the calls it carried vanish without an event."""


@dataclass
class Channel:
    name: str
    uniqueid: str
    linkedid: str
    caller: str
    exten: str
    accountcode: str
    context: str
    state: str = "Down"
    created: float = field(default_factory=time.monotonic)
    hangup: asyncio.Event = field(default_factory=asyncio.Event)
    application: str = "Dial"  # as CoreShowChannels shows it: Dial (the caller), AppDial...
    bridge_id: str = ""  # set while bridged (answered)
    answered: float | None = None  # epoch seconds, what CDR(answer,u) gives
    killed: bool = False  # its Asterisk died: no more events for it

    def snapshot(self) -> list[tuple[str, str]]:
        return [
            ("Channel", self.name),
            ("ChannelState", STATES[self.state]),
            ("ChannelStateDesc", self.state),
            ("CallerIDNum", self.caller),
            ("CallerIDName", f"Booth {self.caller}" if self.caller.isdigit() else "<unknown>"),
            ("ConnectedLineNum", "<unknown>"),
            ("ConnectedLineName", "<unknown>"),
            ("Language", "en"),
            ("AccountCode", self.accountcode),
            ("Context", self.context),
            ("Exten", self.exten),
            ("Priority", "1"),
            ("Uniqueid", self.uniqueid),
            ("Linkedid", self.linkedid),
        ]


class AmiServer:
    """The protocol side: sessions, actions, and broadcasting events to logged-in sessions."""

    def __init__(self, username: str, secret: str, timestamps: bool = True) -> None:
        self.username, self.secret, self.timestamps = username, secret, timestamps
        self.sessions: set[asyncio.StreamWriter] = set()
        self.channels: dict[str, Channel] = {}  # live channels by name
        self.actions: list[dict[str, str]] = []  # every action received (tests read it)
        self.logged_in = asyncio.Event()
        self._server: asyncio.base_events.Server | None = None
        self.generator: Generator | None = None  # places originated calls
        self._originated: set[asyncio.Task] = set()
        self.booted = time.monotonic()  # FullyBooted's Uptime counts from here
        # Tests: called once, right after the next CoreShowChannels list is written (events
        # it sends go out in the same write, as a hangup just after the listing would).
        self.after_show_channels = None
        self._corked: tuple[asyncio.StreamWriter, list[bytes]] | None = None
        self.host, self.port = "127.0.0.1", 0
        self.incarnation = 0  # how many times this Asterisk was (re)started
        self.action_log: list[tuple[int, dict[str, str]]] = []  # (incarnation, action)
        self.unanswered: set[str] = set()  # action names read and never answered
        # manager.conf and cdr_manager.conf as this Asterisk has them (GetConfig shows them)
        self.read, self.write, self.cdr_manager = "all", "all", True
        self._login_order: list[asyncio.StreamWriter] = []
        self._reset_counters()

    def _reset_counters(self) -> None:
        """Channel names and uniqueids count from the start again, as after a restart; the
        part of a uniqueid before the dot (the epoch second) still moves on."""
        self._seq = itertools.count(2)
        self._ids = itertools.count(1)
        self.epoch = max(int(time.time()), getattr(self, "epoch", 0) + 1)

    def next_seq(self) -> int:
        return next(self._seq)

    def next_uniqueid(self) -> str:
        return f"{self.epoch}.{next(self._ids)}"

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._session, host, port)
        self.host, self.port = host, self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self.sessions):
                writer.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    def drop_sessions(self) -> None:
        """Cut every AMI connection (a network fault, an Asterisk restart); the calls go on."""
        for writer in list(self.sessions):
            self.sessions.discard(writer)
            writer.close()
        self.logged_in.clear()

    def drop_client(self, index: int = 0) -> bool:
        """Cut one client's connection (the index-th still logged in, oldest first); the
        calls and the other clients go on. False when there is no such client."""
        alive = [w for w in self._login_order if w in self.sessions]
        if index >= len(alive):
            return False
        writer = alive[index]
        self.sessions.discard(writer)
        writer.close()
        if not self.sessions:
            self.logged_in.clear()
        return True

    async def kill(self) -> None:
        """Asterisk killed: every client dropped, nothing listens, and the calls that were
        up vanish without a Hangup or a Cdr (capture 24)."""
        for channel in self.channels.values():
            channel.killed = True
            channel.hangup.set()
        self.channels.clear()
        server, self._server = self._server, None
        if server is not None:
            server.close()
        self.drop_sessions()
        if server is not None:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        await asyncio.sleep(0)  # let the calls' tasks see that they died

    async def come_back(self) -> int:
        """Start again on the same address, with the channel counters reset."""
        self._reset_counters()
        self.incarnation += 1
        self.booted = time.monotonic()  # FullyBooted's Uptime starts again
        self.generator = None
        self._server = await asyncio.start_server(self._session, self.host, self.port)
        return self.port

    async def restart(self, clean: bool = True, down_for: float = 0.5) -> None:
        """`core restart now` (clean: every call hung up with its Hangup and Cdr, then
        `Event: Shutdown`, as capture 26) or a kill (not clean); back after `down_for` s."""
        if clean:
            for channel in list(self.channels.values()):
                channel.hangup.set()
            await asyncio.sleep(0.05)  # the calls send their Hangup and Cdr events
            self.event("Shutdown", [("Shutdown", "Cleanly"), ("Restart", "True")])
            await asyncio.sleep(0.01)
        await self.kill()
        await asyncio.sleep(down_for)
        await self.come_back()

    # -- sending ---------------------------------------------------------------------
    def event(self, name: str, headers: Iterable[tuple[str, str]]) -> None:
        privilege = {"Cdr": "cdr,all", "Shutdown": "system,all"}.get(name, "call,all")
        if privilege.partition(",")[0] not in classes(self.read):
            return  # the user may not read this class (manager.conf `read =`)
        if name == "Cdr" and not self.cdr_manager:
            return
        items = [("Event", name), ("Privilege", privilege)]
        if self.timestamps:
            items.append(("Timestamp", f"{time.time():.6f}"))
        self.send_raw(frames.build([*items, *headers]))

    def send_raw(self, data: bytes) -> None:
        for writer in list(self.sessions):
            if self._corked is not None and self._corked[0] is writer:
                self._corked[1].append(data)
                continue
            try:
                writer.write(data)
            except (ConnectionError, RuntimeError):
                self.sessions.discard(writer)

    # -- receiving -------------------------------------------------------------------
    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        writer.write(GREETING)
        authenticated = False
        try:
            while True:
                raw = await reader.readuntil(b"\r\n\r\n")
                try:
                    action = frames.parse(raw.decode(errors="replace"))
                except frames.FrameError:
                    writer.write(
                        frames.build(
                            [("Response", "Error"), ("Message", "Missing action in request")]
                        )
                    )
                    continue
                self.actions.append(action)
                self.action_log.append((self.incarnation, action))
                name = action.get("Action", "").lower()
                if name in self.unanswered:
                    continue  # a stuck Asterisk: read, never answered
                reply = [("Response", "Success")]
                if "ActionID" in action:
                    reply.append(("ActionID", action["ActionID"]))
                if name == "login":
                    if (action.get("Username"), action.get("Secret")) != (
                        self.username,
                        self.secret,
                    ):
                        await asyncio.sleep(1)  # Asterisk's own delay after a bad secret
                        reply[0] = ("Response", "Error")
                        writer.write(frames.build([*reply, ("Message", "Authentication failed")]))
                        await writer.drain()
                        break
                    authenticated = True
                    writer.write(frames.build([*reply, ("Message", "Authentication accepted")]))
                    writer.write(
                        frames.build(
                            [
                                ("Event", "FullyBooted"),
                                ("Privilege", "system,all"),
                                ("Uptime", str(int(time.monotonic() - self.booted))),
                                ("LastReload", str(int(time.monotonic() - self.booted))),
                                ("Status", "Fully Booted"),
                            ]
                        )
                    )
                    self.sessions.add(writer)
                    self._login_order.append(writer)
                    self.logged_in.set()
                elif not authenticated:
                    writer.write(
                        frames.build(
                            [("Response", "Error"), ("Message", "Authentication Required")]
                        )
                    )
                elif name in _ACTION_BY_LOWER and not classes(self.write) & set(
                    ACTION_CLASSES[_ACTION_BY_LOWER[name]]
                ):
                    writer.write(
                        frames.build(
                            [("Response", "Error"), *reply[1:], ("Message", "Permission denied")]
                        )
                    )
                elif name == "getconfig":
                    writer.write(frames.build(self._config(action.get("Filename", ""), reply)))
                elif name == "listcommands":
                    allowed = classes(self.write)
                    writer.write(
                        frames.build(
                            [
                                *reply,
                                *(
                                    (act, f"(Priv: {','.join(c)},all)")
                                    for act, c in ACTION_CLASSES.items()
                                    if allowed & set(c)
                                ),
                                ("Ping", "Keepalive command. (Priv: <none>)"),
                            ]
                        )
                    )
                elif name == "ping":
                    writer.write(
                        frames.build(
                            [*reply, ("Ping", "Pong"), ("Timestamp", f"{time.time():.6f}")]
                        )
                    )
                elif name == "hangup":
                    channel = self.find_channel(action.get("Channel", ""))
                    if channel is None:
                        writer.write(
                            frames.build(
                                [("Response", "Error"), *reply[1:], ("Message", "No such channel")]
                            )
                        )
                    else:
                        channel.hangup.set()
                        writer.write(frames.build([*reply, ("Message", "Channel Hungup")]))
                elif name == "coreshowchannels":
                    self._show_channels(writer, reply)
                elif name == "getvar":
                    writer.write(frames.build(self._getvar(action, reply)))
                elif name == "originate":
                    self._originate(writer, action, reply)
                elif name == "logoff":
                    writer.write(
                        frames.build(
                            [
                                ("Response", "Goodbye"),
                                *reply[1:],
                                ("Message", "Thanks for all the fish."),
                            ]
                        )
                    )
                    await writer.drain()
                    break
                else:
                    writer.write(
                        frames.build(
                            [
                                ("Response", "Error"),
                                *reply[1:],
                                ("Message", "Invalid/unknown command"),
                            ]
                        )
                    )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.sessions.discard(writer)
            with contextlib.suppress(ValueError):
                self._login_order.remove(writer)
            writer.close()

    def _config(self, filename: str, reply) -> list[tuple[str, str]]:
        """A GetConfig answer for manager.conf or cdr_manager.conf, in Asterisk's format."""
        yes = {True: "yes", False: "no"}
        files = {
            "manager.conf": {
                "general": [
                    ("enabled", "yes"),
                    ("port", str(self.port)),
                    ("timestampevents", yes[self.timestamps]),
                ],
                self.username: [
                    ("secret", self.secret),
                    ("read", self.read),
                    ("write", self.write),
                ],
            },
            "cdr_manager.conf": {"general": [("enabled", yes[self.cdr_manager])]},
        }
        if filename not in files:
            return [("Response", "Error"), *reply[1:], ("Message", "Config file not found")]
        out = list(reply)
        for n, (category, lines) in enumerate(files[filename].items()):
            out.append((f"Category-{n:06d}", category))
            out += [(f"Line-{n:06d}-{i:06d}", f"{k}={v}") for i, (k, v) in enumerate(lines)]
        return out

    def find_channel(self, name_or_uniqueid: str) -> Channel | None:
        """As Asterisk 20's Hangup: a channel name, or a channel's Uniqueid."""
        channel = self.channels.get(name_or_uniqueid)
        if channel is None and name_or_uniqueid:
            channel = next(
                (c for c in self.channels.values() if c.uniqueid == name_or_uniqueid), None
            )
        return channel

    def _originate(self, writer: asyncio.StreamWriter, action: dict, reply) -> None:
        target = action.get("Channel", "")
        a_number = target.partition("/")[2].partition("@")[0]
        b_number = action.get("Exten", "")
        if not (target.startswith("Local/") and a_number and b_number):
            writer.write(
                frames.build([("Response", "Error"), *reply[1:], ("Message", "Originate failed")])
            )
            return
        writer.write(frames.build([*reply, ("Message", "Originate successfully queued")]))
        times = dict(v.split("=", 1) for v in action.get("Variable", "").split(",") if "=" in v)
        self.generator = self.generator or Generator(self)
        caller = action.get("CallerID", "").rpartition("<")[2].rstrip(">") or "<unknown>"
        task = asyncio.ensure_future(
            self.generator.callback(
                action.get("ActionID", ""),
                a_number,
                b_number,
                caller,
                action.get("Account", ""),
                float(times.get("A_RING_SECS", 1.0)),
                float(times.get("B_RING_SECS", 0.5)),
                float(times.get("B_TALK_SECS", 3.0)),
            )
        )
        self._originated.add(task)
        task.add_done_callback(self._originated.discard)

    def _getvar(self, action: dict, reply) -> list[tuple[str, str]]:
        """Getvar on a channel; only `CDR(answer...)` has a value here (epoch seconds with
        microseconds, as `CDR(answer,u)`; empty while unanswered)."""
        channel = self.find_channel(action.get("Channel", ""))
        if channel is None:
            return [("Response", "Error"), *reply[1:], ("Message", "No such channel")]
        variable = action.get("Variable", "")
        value = ""
        if variable.startswith("CDR(answer") and channel.answered is not None:
            value = f"{channel.answered:.6f}"
        return [*reply, ("Variable", variable), ("Value", value)]

    def _show_channels(self, writer: asyncio.StreamWriter, reply) -> None:
        """The list in one write, as Asterisk's session thread sends it (with the events of
        `after_show_channels` in the same write: the listener reads them in one go)."""
        action_id = [h for h in reply if h[0] == "ActionID"]
        out = [frames.build([*reply, ("EventList", "start"), ("Message", "Channels will follow")])]
        now = time.monotonic()
        for channel in list(self.channels.values()):
            seconds = int(now - channel.created)
            duration = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
            out.append(
                frames.build(
                    [
                        ("Event", "CoreShowChannel"),
                        *action_id,
                        *channel.snapshot(),
                        ("Application", channel.application),
                        ("Duration", duration),
                        ("BridgeId", channel.bridge_id),
                    ]
                )
            )
        out.append(
            frames.build(
                [
                    ("Event", "CoreShowChannelsComplete"),
                    *action_id,
                    ("EventList", "Complete"),
                    ("ListItems", str(len(self.channels))),
                ]
            )
        )
        hook, self.after_show_channels = self.after_show_channels, None
        if hook is not None:
            self._corked = (writer, out)
            try:
                hook()
            finally:
                self._corked = None
        writer.write(b"".join(out))


# -- replay ------------------------------------------------------------------------------
def capture_events(path: Path) -> list[tuple[float, str]]:
    """(t, raw) of the unsolicited messages of a capture: events that answer none of the
    capture client's own actions (its Login, Hangup, CoreShowChannels, Logoff)."""
    return [e for s in capture_sessions(path) for e in s.events]


@dataclass
class CaptureSession:
    """One AMI session of a capture (24-26 hold two: Asterisk killed or restarted, or the
    listener away). `end`: how it ended (`eof`: Asterisk closed it; `closed`: the client
    did, 25); `listed`: the channels its login's CoreShowChannels reply listed (what was up
    when it began); `uptime`: its FullyBooted's Uptime."""

    login_t: float
    events: list[tuple[float, str]] = field(default_factory=list)
    end: str = ""
    end_t: float | None = None
    listed: list[dict[str, str]] | None = None
    uptime: int | None = None


def capture_sessions(path: Path) -> list[CaptureSession]:
    with open(path) as f:
        head = json.loads(next(f))
        items = [json.loads(line) for line in f]
    closed = head.get("observed", {}).get("disconnect", {}).get("t_client_closed_socket")
    sessions: list[CaptureSession] = []
    for item in items:
        raw = item.get("raw", "")
        if raw.startswith("Asterisk Call Manager"):
            if sessions and not sessions[-1].end:
                sessions[-1].end, sessions[-1].end_t = "closed", closed or item["t"]
            sessions.append(CaptureSession(item["t"]))
            continue
        if not sessions:
            continue
        session = sessions[-1]
        if item.get("eof"):
            session.end, session.end_t = "eof", item["t"]
        if not raw.startswith("Event: "):
            continue
        headers = frames.parse(raw)
        if headers.get("Event") == "FullyBooted" and session.uptime is None:
            uptime = headers.get("Uptime", "")
            session.uptime = int(uptime) if uptime.isdigit() else None
        listing = headers.get("Event") in ("CoreShowChannel", "CoreShowChannelsComplete")
        if listing and not session.events:  # the login's snapshot (before any event)
            session.listed = session.listed or []
            if headers["Event"] == "CoreShowChannel":
                session.listed.append(headers)
        if "\r\nActionID: " in raw:
            continue
        if raw.startswith(("Event: FullyBooted", "Event: SuccessfulAuth")):
            continue
        session.events.append((item["t"], raw))
    return sessions


def _answer_ts(path: Path) -> dict[str, float]:
    """Asterisk's answer `t` of the calls of the header's `observed.calls`, by Uniqueid."""
    with open(path) as f:
        head = json.loads(next(f))
    return {
        c["booth_uniqueid"]: c["t_answered"]
        for c in head.get("observed", {}).get("calls", [])
        if c.get("booth_uniqueid") and c.get("t_answered") is not None
    }


async def replay(server: AmiServer, path: Path, speed: float = 1.0, jitter: float = 0.0) -> None:
    """Send a capture's events to the logged-in sessions, its pace divided by `speed`.

    Each session of the capture starts when a client has logged in. Between two sessions
    the replay does what the capture shows: Asterisk closed the connection (eof; with the
    next FullyBooted's `Uptime: 0` it restarted: every channel gone, `Uptime` from 0) or the
    client went away (the connection is dropped); the channels up when the next session
    begins are the ones its CoreShowChannels listed. `Timestamp` headers are moved onto the
    replay's own clock. `jitter`: every event is delivered up to this many seconds late
    (random, stream order kept), as a loaded network or listener would see it."""
    sessions = capture_sessions(path)
    answered_t = _answer_ts(path)
    rnd = random.Random(0)
    for n, session in enumerate(sessions):
        if not session.events and n == 0:
            continue
        await server.logged_in.wait()
        first_t = session.events[0][0] if n == 0 and session.events else session.login_t
        start, wall0, first_ts, due = time.monotonic(), time.time(), None, 0.0
        if session.listed is not None and n > 0:
            for channel in server.channels.values():
                if channel.uniqueid in answered_t:
                    channel.answered = wall0 + (answered_t[channel.uniqueid] - first_t) / speed
        for t, raw in session.events:
            # each event late by its own random amount, never before the one before it
            due = max(due, start + (t - first_t) / speed + rnd.uniform(0, jitter))
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            headers = frames.parse(raw)
            if "Timestamp" in headers:
                stamp = float(headers["Timestamp"])
                if first_ts is None:  # the Timestamp clock at first_t
                    first_ts = stamp - (t - first_t)
                moved = f"{wall0 + (stamp - first_ts) / speed:.6f}"
                raw = raw.replace(
                    f"Timestamp: {headers['Timestamp']}\r\n", f"Timestamp: {moved}\r\n"
                )
                headers["Timestamp"] = moved
            _follow_channels(server, headers)
            server.send_raw(raw.encode())
        if n + 1 < len(sessions):
            if session.end_t is not None:
                last_t = session.events[-1][0] if session.events else first_t
                await asyncio.sleep(max(0.0, (session.end_t - max(last_t, first_t)) / speed))
            _between_sessions(server, sessions[n + 1], speed)


def _between_sessions(server: AmiServer, following: CaptureSession, speed: float) -> None:
    server.drop_sessions()
    if following.uptime == 0:  # Asterisk restarted: nothing of before survives
        server.channels.clear()
        server.booted = time.monotonic()
    if following.listed is not None:
        server.channels.clear()
        for item in following.listed:
            seconds = hms_seconds(item.get("Duration", ""))
            channel = Channel(
                item.get("Channel", ""),
                item.get("Uniqueid", ""),
                item.get("Linkedid", ""),
                item.get("CallerIDNum", ""),
                item.get("Exten", ""),
                item.get("AccountCode", ""),
                item.get("Context", ""),
                item.get("ChannelStateDesc", "Down"),
                created=time.monotonic() - seconds / speed,
                application=item.get("Application", ""),
                bridge_id=item.get("BridgeId", ""),
            )
            server.channels[channel.name] = channel


def _follow_channels(server: AmiServer, headers: dict[str, str]) -> None:
    """Keep the live channel list true for CoreShowChannels (and Getvar) during a replay."""
    name, event = headers.get("Channel", ""), headers.get("Event")
    channel = server.channels.get(name)
    if event == "Newchannel":
        server.channels[name] = Channel(
            name,
            headers.get("Uniqueid", ""),
            headers.get("Linkedid", ""),
            headers.get("CallerIDNum", ""),
            headers.get("Exten", ""),
            headers.get("AccountCode", ""),
            headers.get("Context", ""),
            headers.get("ChannelStateDesc", "Down"),
            application="",
        )
    elif event == "Newstate" and channel is not None:
        channel.state = headers.get("ChannelStateDesc", "Down")
    elif event == "DialBegin" and channel is not None:
        channel.application = "Dial"
        if headers.get("DestChannel") in server.channels:
            server.channels[headers["DestChannel"]].application = "AppDial"
    elif event == "DialEnd" and channel is not None and headers.get("DialStatus") == "ANSWER":
        stamp = headers.get("Timestamp")
        channel.answered = float(stamp) if stamp else time.time()
    elif event in ("BridgeEnter", "BridgeLeave") and channel is not None:
        channel.bridge_id = headers.get("BridgeUniqueid", "") if event == "BridgeEnter" else ""
    elif event == "Hangup":
        server.channels.pop(name, None)


# -- generator ---------------------------------------------------------------------------
@dataclass
class CallPlan:
    booth: str
    number: str
    ring: float  # seconds
    talk: float  # seconds; answered only if answer is True
    answer: bool = True
    accountcode: str = "shop1"


class Generator:
    """SIP booth calls as Asterisk reports them (modelled on captures 14-17)."""

    def __init__(self, server: AmiServer) -> None:
        self.server = server
        self.ended: list[tuple[str, str]] = []  # (booth uniqueid, how it ended)
        self.channels: dict[str, str] = {}  # booth uniqueid -> its channel name

    def _uniqueid(self) -> str:
        return self.server.next_uniqueid()

    async def call(self, plan: CallPlan) -> None:
        """One booth call; if its Asterisk is killed meanwhile it just stops (no events)."""
        with contextlib.suppress(Killed):
            await self._call(plan)

    async def _call(self, plan: CallPlan) -> None:
        s = self.server
        booth = Channel(
            f"SIP/{plan.booth}-{s.next_seq():08x}",
            self._uniqueid(),
            "",
            plan.booth,
            plan.number,
            plan.accountcode,
            "callshop-sip",
        )
        booth.linkedid = booth.uniqueid
        self.channels[booth.uniqueid] = booth.name
        trunk = Channel(
            f"SIP/pstn-trunk-{s.next_seq():08x}",
            self._uniqueid(),
            booth.linkedid,
            "<unknown>",
            "s",
            "",
            "sip-reject",
            application="AppDial",
        )
        s.channels[booth.name] = booth
        s.event("Newchannel", booth.snapshot())
        booth.state = "Ring"
        s.event("Newstate", booth.snapshot())
        s.channels[trunk.name] = trunk
        s.event("Newchannel", trunk.snapshot())
        trunk.caller, trunk.exten, trunk.accountcode = plan.number, plan.number, plan.accountcode
        dest = [
            ("DestChannel", trunk.name),
            ("DestUniqueid", trunk.uniqueid),
            ("DialString", f"pstn-trunk/{plan.number}"),
        ]
        s.event("DialBegin", [*booth.snapshot(), *dest])
        trunk.state = "Ringing"
        s.event("Newstate", trunk.snapshot())
        status, answered = "NOANSWER", False
        if await self._wait(booth, plan.ring):
            status = "CANCEL"
        elif plan.answer:
            status, answered = "ANSWER", True
            trunk.state = "Up"
            s.event("Newstate", trunk.snapshot())
        s.event("DialEnd", [*booth.snapshot(), *dest, ("DialStatus", status)])
        answered_at = time.time()
        how = "booth-cancel" if status == "CANCEL" else "no-answer"
        if answered:
            booth.state = "Up"
            s.event("Newstate", booth.snapshot())
            bridge = [("BridgeUniqueid", f"bridge-{booth.uniqueid}"), ("BridgeType", "basic")]
            booth.bridge_id, booth.answered = f"bridge-{booth.uniqueid}", answered_at
            s.event("BridgeEnter", [*bridge, *trunk.snapshot()])
            s.event("BridgeEnter", [*bridge, *booth.snapshot()])
            how = "hangup-action" if await self._wait(booth, plan.talk) else "callee"
            s.event("BridgeLeave", [*bridge, *trunk.snapshot()])
        for channel in (trunk, booth):
            s.channels.pop(channel.name, None)
            s.event(
                "Hangup", [*channel.snapshot(), ("Cause", "16"), ("Cause-txt", "Normal Clearing")]
            )
        end = time.time()
        billsec = int(end - answered_at) if answered else 0
        s.event(
            "Cdr",
            [
                ("AccountCode", plan.accountcode),
                ("Source", plan.booth),
                ("Destination", plan.number),
                ("DestinationContext", "callshop-sip"),
                ("Channel", booth.name),
                ("DestinationChannel", trunk.name),
                ("LastApplication", "Dial"),
                ("Duration", str(int(end - booth.created))),
                ("BillableSeconds", str(billsec)),
                ("Disposition", "ANSWERED" if answered else "NO ANSWER"),
                ("UniqueID", booth.uniqueid),
                ("UserField", ""),
            ],
        )
        self.ended.append((booth.uniqueid, how))

    async def callback(self, *args, **kwargs) -> None:
        with contextlib.suppress(Killed):
            await self._callback(*args, **kwargs)

    async def _callback(
        self,
        action_id: str,
        a_number: str,
        b_number: str,
        caller: str,
        accountcode: str,
        ring_a: float,
        ring_b: float,
        talk: float,
    ) -> None:
        """An originated callback, as capture 08: leg A (Local/<A>@pstn-sim, the customer) is
        rung and answers; its `;1` half then runs context `callback` and dials leg B."""
        s = self.server
        seq_a, seq_b = s.next_seq(), s.next_seq()
        a1, a2 = self._local_pair(a_number, seq_a, "", accountcode)
        dest_a = [("DestChannel", a1.name), ("DestExten", a_number), ("DestUniqueid", a1.uniqueid)]
        s.event("DialBegin", [*dest_a, ("DialString", f"{a_number}@pstn-sim")])
        a1.caller, a2.caller = caller, caller
        a1.state = "Ringing"
        s.event("Newstate", a1.snapshot())
        if await self._wait(a1, ring_a):
            await self._hang_up(a1, a2)
            s.event(
                "OriginateResponse",
                [
                    ("ActionID", action_id),
                    ("Response", "Failure"),
                    ("Channel", a1.name),
                    ("Reason", "1"),
                ],
            )
            return
        for channel in (a2, a1):
            channel.state = "Up"
            s.event("Newstate", channel.snapshot())
        s.event(
            "OriginateResponse",
            [
                ("ActionID", action_id),
                ("Response", "Success"),
                ("Channel", a1.name),
                ("Context", "callback"),
                ("Exten", b_number),
                ("Reason", "4"),
                ("Uniqueid", a1.uniqueid),
                ("CallerIDNum", caller),
            ],
        )
        s.event("DialEnd", [*dest_a, ("DialStatus", "ANSWER")])
        a1.context, a1.exten = "callback", b_number
        b1, b2 = self._local_pair(b_number, seq_b, a1.linkedid, accountcode)
        dest_b = [("DestChannel", b1.name), ("DestExten", b_number), ("DestUniqueid", b1.uniqueid)]
        s.event("DialBegin", [*a1.snapshot(), *dest_b, ("DialString", f"{b_number}@pstn-sim")])
        b1.caller, b1.state = b_number, "Ringing"
        s.event("Newstate", b1.snapshot())
        if not await self._wait(a1, ring_b):
            for channel in (b2, b1):
                channel.state = "Up"
                s.event("Newstate", channel.snapshot())
            s.event("DialEnd", [*a1.snapshot(), *dest_b, ("DialStatus", "ANSWER")])
            await self._wait(a1, talk)
        else:
            s.event("DialEnd", [*a1.snapshot(), *dest_b, ("DialStatus", "CANCEL")])
        await self._hang_up(b2, b1, a1, a2)
        self.ended.append((a1.uniqueid, "callback"))

    def _local_pair(
        self, number: str, seq: int, linkedid: str, accountcode: str
    ) -> tuple[Channel, Channel]:
        """The two halves of `Local/<number>@pstn-sim`, announced (`;2` plays the far end)."""
        name = f"Local/{number}@pstn-sim-{seq:08x}"
        one = Channel(
            f"{name};1", self._uniqueid(), linkedid, "<unknown>", number, accountcode, "pstn-sim"
        )
        one.linkedid = linkedid or one.uniqueid
        two = Channel(
            f"{name};2",
            self._uniqueid(),
            one.linkedid,
            "<unknown>",
            number,
            accountcode,
            "pstn-sim",
            state="Ring",
        )
        for channel in (one, two):
            self.server.channels[channel.name] = channel
            self.server.event("Newchannel", channel.snapshot())
        return one, two

    async def _hang_up(self, *channels: Channel) -> None:
        for channel in channels:
            self.server.channels.pop(channel.name, None)
            self.server.event(
                "Hangup", [*channel.snapshot(), ("Cause", "16"), ("Cause-txt", "Normal Clearing")]
            )

    @staticmethod
    async def _wait(channel: Channel, seconds: float) -> bool:
        """Sleep `seconds`; True if the channel was hung up by an action meanwhile; raises
        Killed if its Asterisk died meanwhile."""
        try:
            await asyncio.wait_for(channel.hangup.wait(), timeout=seconds)
        except TimeoutError:
            return False
        if channel.killed:
            raise Killed(channel.name)
        return True


def random_plans(
    count: int, booths: int, seed: int, answer_ratio: float, talk: tuple, numbers: list[str]
) -> list[CallPlan]:
    rnd = random.Random(seed)
    return [
        CallPlan(
            str(8001 + rnd.randrange(booths)),
            rnd.choice(numbers),
            rnd.uniform(0.2, 3.0),
            rnd.uniform(*talk),
            rnd.random() < answer_ratio,
        )
        for _ in range(count)
    ]


async def run_generator(
    server: AmiServer, plans: list[CallPlan], cps: float, concurrent: int | None = None
) -> None:
    """Start the planned calls at `cps` calls a second (at most `concurrent` at once)."""
    await server.logged_in.wait()
    generator = Generator(server)
    limit = asyncio.Semaphore(concurrent or len(plans) or 1)

    async def one(plan: CallPlan) -> None:
        async with limit:
            await generator.call(plan)

    tasks = []
    for plan in plans:
        tasks.append(asyncio.create_task(one(plan)))
        await asyncio.sleep(1 / cps if cps > 0 else 0)
    await asyncio.gather(*tasks)
