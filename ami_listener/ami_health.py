"""Does the AMI user give billing what it needs? Used by `asterbill check` and by the listener
at each login (as warnings: billing goes on with what it has).

Billing needs the read classes `call` (channels, dials, bridges, hangups), `cdr` (cdr_manager's
`Cdr` event: Asterisk's own billsec; `[general] enabled = yes` in cdr_manager.conf) and
`system` (FullyBooted, Shutdown); the actions Hangup and CoreShowChannels (and Getvar for
calls adopted after a reconnect, Originate for callbacks); and `timestampevents = yes` in
manager.conf (without it billsec is measured with the listener's own clock).

What Asterisk 20 tells a client about this (checked in main/manager.c and the captures):
- `GetConfig` (write class `system` or `config`) returns manager.conf and cdr_manager.conf as
  `Category-NNNNNN` / `Line-NNNNNN-NNNNNN: key=value` headers: the user's `read` / `write`
  lines and `[general] timestampevents`, the definitive answer when it is allowed;
- `ListCommands` (any user) lists the actions this user may send, i.e. its write classes;
- events: with `timestampevents = yes` every event Asterisk raises has a `Timestamp` header,
  except the FullyBooted written into the login reply and the items of an action's reply list
  (they carry an ActionID); each event's `Privilege` names its class, so a `Cdr` arriving
  without any `call` event means the `call` class is missing. Neither the Login response nor
  FullyBooted says anything about the user's classes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from ami_listener import frames

NEEDED_READ = ("call", "cdr", "system")
ALL_CLASSES = (
    "system",
    "call",
    "log",
    "verbose",
    "command",
    "agent",
    "user",
    "config",
    "dtmf",
    "reporting",
    "cdr",
    "dialplan",
    "originate",
    "agi",
    "cc",
    "aoc",
    "test",
    "security",
    "message",
)
# action -> the write classes that allow it (any one of them), as Asterisk 20 registers them
NEEDED_ACTIONS = {
    "Hangup": ("system", "call"),
    "CoreShowChannels": ("system", "reporting"),
    "Getvar": ("call", "reporting"),
}
CALLBACK_ACTION = ("Originate", ("originate",))
_LINE = re.compile(r"Line-(\d{6})-(\d{6})")
_CATEGORY = re.compile(r"Category-(\d{6})")


def classes(value: str) -> set[str]:
    """`read = call,cdr,system` -> {"call", "cdr", "system"}; `all` -> every class."""
    names = {c.strip().lower() for c in value.split(",") if c.strip()}
    return set(ALL_CLASSES) if "all" in names else names


def parse_config(reply: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """A GetConfig reply -> {category: {key: value}} (the last value of a repeated key)."""
    names: dict[str, str] = {}
    lines: list[tuple[str, str, str]] = []
    for key, value in reply.items():
        if match := _CATEGORY.fullmatch(key):
            names[match[1]] = value
        elif match := _LINE.fullmatch(key):
            name, _, setting = value.partition("=")
            lines.append((match[1], name.strip().lower(), setting.strip()))
    config: dict[str, dict[str, str]] = {name: {} for name in names.values()}
    for number, name, setting in lines:
        config.setdefault(names.get(number, number), {})[name] = setting
    return config


def _true(value: str) -> bool:
    return value.strip().lower() in ("yes", "true", "y", "t", "1", "on")


def manager_conf_warnings(config: dict[str, dict[str, str]], user: str) -> list[str]:
    """What manager.conf says is missing for `user`."""
    out = []
    if not _true(config.get("general", {}).get("timestampevents", "no")):
        out.append(
            "manager.conf [general] has no `timestampevents = yes`: billsec will be measured "
            "with the listener's clock (off by a second on some calls)"
        )
    section = config.get(user)
    if section is None:
        return [*out, f"manager.conf has no [{user}] section (a user from elsewhere?)"]
    missing = [c for c in NEEDED_READ if c not in classes(section.get("read", ""))]
    if missing:
        out.append(
            f"AMI user {user!r} lacks the read class(es) {', '.join(missing)} "
            f"(read = {section.get('read', '')}); billing needs read = call,cdr,system"
        )
    write = classes(section.get("write", ""))
    for action, allowed in NEEDED_ACTIONS.items():
        if not write & set(allowed):
            out.append(
                f"AMI user {user!r} may not send {action} (write = {section.get('write', '')}); "
                "billing needs write = call,system"
            )
    return out


def cdr_manager_warnings(config: dict[str, dict[str, str]]) -> list[str]:
    if _true(config.get("general", {}).get("enabled", "no")):
        return []
    return [
        "cdr_manager.conf [general] is not `enabled = yes`: no Cdr events, so billsec cannot "
        "be Asterisk's own"
    ]


def command_warnings(reply: Mapping[str, str], user: str, callbacks: bool = False) -> list[str]:
    """A ListCommands reply (one `Name: synopsis (Priv: ...)` header per action allowed)."""
    allowed = {k.lower() for k in reply}
    needed = list(NEEDED_ACTIONS) + ([CALLBACK_ACTION[0]] if callbacks else [])
    return [
        f"AMI user {user!r} may not send {action}: add a write class that allows it "
        f"({' or '.join(NEEDED_ACTIONS.get(action, CALLBACK_ACTION[1]))})"
        for action in needed
        if action.lower() not in allowed
    ]


@dataclass
class EventWatcher:
    """Learns from the events themselves: a missing `Timestamp` (timestampevents = no), a
    `Cdr` with no `call` event before it (no read class `call`), calls that end with no
    `Cdr` (no read class `cdr`, or cdr_manager off). `observe` returns new warnings once."""

    hangups_before_cdr_warning: int = 8  # the captures: at most 2 before the first Cdr
    events: int = 0
    untimed: int = 0
    seen: set[str] = field(default_factory=set)  # classes seen in Privilege headers
    hangups: int = 0
    warned: set[str] = field(default_factory=set)

    def observe(self, event: Mapping[str, str]) -> list[str]:
        name = event.get("Event", "")
        if not name or "ActionID" in event or name == "FullyBooted":
            return []  # reply items and the login's FullyBooted never carry a Timestamp
        before = self._state()
        self.events += 1
        self.seen |= {c.strip() for c in event.get("Privilege", "").split(",")} - {"", "all"}
        if not event.get("Timestamp"):
            self.untimed += 1
        if name == "Hangup":
            self.hangups += 1
        if self._state() == before:
            return []  # the common case, kept cheap: nothing new to say
        return [w for w in self.warnings() if w not in self.warned and not self.warned.add(w)]

    def _state(self) -> tuple:
        return bool(self.untimed), len(self.seen), self.hangups >= self.hangups_before_cdr_warning

    def warnings(self) -> list[str]:
        out = []
        if self.untimed:
            out.append(
                "AMI events carry no Timestamp: set `timestampevents = yes` in manager.conf "
                "[general] (billsec is measured with the listener's clock meanwhile)"
            )
        if "cdr" in self.seen and "call" not in self.seen:
            out.append("Cdr events arrive but no call events: the AMI user lacks read class call")
        if self.hangups >= self.hangups_before_cdr_warning and "cdr" not in self.seen:
            out.append(
                f"{self.hangups} hangups and no Cdr event: give the AMI user read class cdr and "
                "enable cdr_manager (cdr_manager.conf [general] enabled = yes)"
            )
        return out


@dataclass
class ProbeResult:
    greeting: str
    warnings: list[str]
    events: int  # events watched after the login


class AmiLoginRefused(Exception):
    pass


async def probe(
    host: str,
    port: int,
    user: str,
    secret: str,
    watch_s: float = 3.0,
    timeout_s: float = 5.0,
    callbacks: bool = False,
) -> ProbeResult:
    """Log in as `user`, ask GetConfig (manager.conf, cdr_manager.conf) and ListCommands,
    watch the events for `watch_s` seconds, log off. Raises OSError / TimeoutError when
    Asterisk cannot be reached or does not answer, AmiLoginRefused on a refused login."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    watcher = EventWatcher()
    warnings: list[str] = []
    ids = itertools.count(1)

    async def ask(headers: list[tuple[str, str]]) -> dict[str, str]:
        action_id = f"asterbill-check-{next(ids)}"
        writer.write(frames.build([*headers, ("ActionID", action_id)]))
        await writer.drain()
        async with asyncio.timeout(timeout_s):
            while True:
                message = frames.parse((await reader.readuntil(b"\r\n\r\n")).decode())
                if message.get("ActionID") == action_id and "Response" in message:
                    return message
                warnings.extend(watcher.observe(message))

    try:
        greeting = (await asyncio.wait_for(reader.readline(), timeout_s)).decode().strip()
        login = await ask([("Action", "Login"), ("Username", user), ("Secret", secret)])
        if login.get("Response") != "Success":
            raise AmiLoginRefused(login.get("Message", "login refused"))
        manager_conf = await ask([("Action", "GetConfig"), ("Filename", "manager.conf")])
        if manager_conf.get("Response") == "Success":
            warnings.extend(manager_conf_warnings(parse_config(manager_conf), user))
            cdr_conf = await ask([("Action", "GetConfig"), ("Filename", "cdr_manager.conf")])
            if cdr_conf.get("Response") == "Success":
                warnings.extend(cdr_manager_warnings(parse_config(cdr_conf)))
        commands = await ask([("Action", "ListCommands")])
        warnings.extend(command_warnings(commands, user, callbacks))
        before = watcher.events
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(watch_s):
                while True:
                    raw = await reader.readuntil(b"\r\n\r\n")
                    warnings.extend(watcher.observe(frames.parse(raw.decode())))
        if watcher.events == 0:
            warnings.append(
                f"no AMI event in {watch_s:g} s (an idle PBX?): could not see whether events "
                "carry a Timestamp"
            )
        writer.write(frames.build([("Action", "Logoff")]))
        return ProbeResult(greeting, list(dict.fromkeys(warnings)), watcher.events - before)
    finally:
        writer.close()
