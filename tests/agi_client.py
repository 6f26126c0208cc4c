"""A fake Asterisk for FastAGI tests: it connects to the server over TCP and speaks AGI as
Asterisk does (the `agi_*` environment, an empty line, then one reply line per command:
`200 result=...`, `HANGUP` and `511` once the channel is gone)."""

from __future__ import annotations

import asyncio
import itertools
import re
from dataclasses import dataclass, field

_ids = itertools.count(1)
DEAD = "511 Command Not Permitted on a dead channel or intercepted channel"


@dataclass
class AgiCall:
    commands: list[str] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    said: list[str] = field(default_factory=list)  # sounds and numbers, in order
    closed_by_server: bool = False


def environment(port: int, script: str, args=(), **values) -> list[str]:
    n = next(_ids)
    env = {
        "agi_network": "yes",
        "agi_network_script": script,
        "agi_request": f"agi://127.0.0.1:{port}/{script}",
        "agi_channel": f"SIP/{values.get('callerid', '8001')}-{n:08x}",
        "agi_language": "en",
        "agi_type": "SIP",
        "agi_uniqueid": f"1795000000.{n}",
        "agi_version": "18.20.0",
        "agi_callerid": "8001",
        "agi_calleridname": "Booth",
        "agi_callingpres": "0",
        "agi_callingani2": "0",
        "agi_callington": "0",
        "agi_callingtns": "0",
        "agi_dnid": "unknown",
        "agi_rdnis": "unknown",
        "agi_context": "booths",
        "agi_extension": "004930123456",
        "agi_priority": "2",
        "agi_enhanced": "0.0",
        "agi_accountcode": "",
        "agi_threadid": "140000000000000",
    }
    env.update({k if k.startswith("agi_") else f"agi_{k}": v for k, v in values.items()})
    lines = [f"{k}: {v}" for k, v in env.items()]
    lines += [f"agi_arg_{i}: {a}" for i, a in enumerate(args, start=1)]
    return lines


async def call(
    port: int,
    script: str,
    args=(),
    *,
    dtmf=(),
    hangup_at: str | None = None,
    raw_env: bytes | None = None,
    **values,
) -> AgiCall:
    """One AGI session. `dtmf`: what the caller types at each GET DATA in turn (None: a
    timeout). `hangup_at`: the caller hangs up when a command starting with this arrives."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if raw_env is None:
        raw_env = ("\n".join(environment(port, script, args, **values)) + "\n\n").encode()
    writer.write(raw_env)
    await writer.drain()
    out, typed, dead = AgiCall(), list(dtmf), False
    while True:
        line = await asyncio.wait_for(reader.readline(), 10)
        if not line:
            out.closed_by_server = True
            break
        command = line.decode().rstrip("\n")
        out.commands.append(command)
        if dead:
            reply = DEAD
        elif hangup_at is not None and command.startswith(hangup_at):
            # Asterisk's asynchronous HANGUP line, then the command's own failure.
            writer.write(b"HANGUP\n")
            reply, dead = "200 result=-1", True
        else:
            reply = _answer(command, out, typed)
        writer.write((reply + "\n").encode())
        await writer.drain()
    writer.close()
    return out


def _answer(command: str, out: AgiCall, typed: list) -> str:
    if m := re.match(r'SET VARIABLE (\S+) "(.*)"$', command):
        out.variables[m[1]] = m[2]
        return "200 result=1"
    if m := re.match(r"STREAM FILE (\S+)", command):
        out.said.append(m[1])
        return "200 result=0 endpos=8000"
    if m := re.match(r"SAY (NUMBER|DIGITS) (\d+)", command):
        out.said.append(m[2])
        return "200 result=0"
    if m := re.match(r"GET DATA (\S+)", command):
        out.said.append(m[1])
        digits = typed.pop(0) if typed else None
        return "200 result= (timeout)" if digits is None else f"200 result={digits}"
    if command.startswith(("ANSWER", "EXEC", "HANGUP")):
        return "200 result=0"
    return "510 Invalid or unknown command"
