"""The FastAGI wire protocol on panoramisk's Application, made robust (STACK-NOTES.md).

panoramisk 1.4's own header loop spins at 100% CPU on a connect + close before the empty
line, dies on a Latin-1 byte, routes on the whole `agi_network_script` (a `?query` misses the
route) and lets a `HANGUP` line desynchronise every later reply. `AgiApplication.handler`
replaces the loop: one line at a time under a timeout, EOF ends the session, bytes decoded
with `errors="replace"`, the route taken before `?`, and every session closed in `finally`.
`AgiSession.command` stops the script at the first sign of a dead channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from urllib.parse import parse_qsl

from panoramisk.fast_agi import Application, Request
from panoramisk.utils import parse_agi_result

log = logging.getLogger("asterbill.agi")

HEADER_TIMEOUT_S = 5.0  # Asterisk sends the whole environment at once
REPLY_TIMEOUT_S = 120.0  # GET DATA and STREAM FILE answer after the caller did something
MAX_HEADERS = 200  # a real environment has ~25 lines (agi_arg_N included)
MAX_LINE = 8192


class ChannelGone(Exception):
    """The channel hung up (HANGUP line, 511, result=-1) or the socket closed: stop now."""


class BadReply(Exception):
    """Asterisk answered a command with an error (510, 520, or a line we cannot parse)."""


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").rstrip("\r\n")


class AgiSession(Request):
    """One AGI session: the `agi_*` headers, the script's arguments, and commands."""

    def __init__(self, app, headers, reader, writer, script: str, query: dict[str, str]):
        super().__init__(app, headers, reader, writer)
        self.script = script
        self.query = query
        self.alive = True  # False once the channel is known to be gone

    @property
    def args(self) -> list[str]:
        out = []
        for n in range(1, 64):
            value = self.headers.get(f"agi_arg_{n}")
            if value is None:
                break
            out.append(value)
        return out

    def describe(self) -> str:
        h = self.headers
        return (
            f"{self.script} channel={h.get('agi_channel', '?')} "
            f"uniqueid={h.get('agi_uniqueid', '?')} callerid={h.get('agi_callerid', '?')}"
        )

    async def _read_result(self):
        raw = await asyncio.wait_for(self.reader.readline(), REPLY_TIMEOUT_S)
        if not raw:
            raise ChannelGone("socket closed")
        return parse_agi_result(_decode(raw))

    async def command(self, text: str) -> tuple[str, str]:
        """Send one command; its (result, data). Raises ChannelGone at the first sign of a
        hang-up (then every later reply would be one off), BadReply on 510 / 520."""
        if not self.alive:
            raise ChannelGone("channel already gone")
        try:
            reply = await self.send_command(text)
        except (ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
            self.alive = False
            raise ChannelGone(f"socket closed ({exc.__class__.__name__})") from None
        if "error" in reply:
            if reply["error"] in ("AGIResultHangup", "AGIAppError", "AGIDeadChannelError"):
                self.alive = False
                raise ChannelGone(reply["error"])
            if reply.get("status_code") == 511:
                self.alive = False
                raise ChannelGone("511 dead channel")
            raise BadReply(f"{text.split(' ', 1)[0]}: {reply['error']} {reply.get('msg', '')}")
        result, data = reply.get("result", ("", ""))
        return result, data

    async def set_variable(self, name: str, value: str) -> None:
        clean = str(value).replace("\\", "").replace('"', "").replace("\n", " ")
        await self.command(f'SET VARIABLE {name} "{clean}"')


class AgiApplication(Application):
    """panoramisk's Application with the safe header loop (see the module docstring)."""

    def __init__(self, loop=None) -> None:
        super().__init__(loop=loop or asyncio.get_running_loop())
        self.sessions = 0  # answered sessions (for logs and the benchmark)
        self.failed = 0

    async def _headers(self, reader) -> dict[str, str] | None:
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS):
            raw = await reader.readline()
            if not raw:
                return None  # EOF before the empty line: a health check, a port scan
            line = _decode(raw)
            if not line:
                return headers
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip()] = value.strip()
        raise ValueError(f"more than {MAX_HEADERS} header lines")

    async def handler(self, reader, writer) -> None:
        peer = writer.get_extra_info("peername")
        try:
            try:
                headers = await asyncio.wait_for(self._headers(reader), HEADER_TIMEOUT_S)
            except (TimeoutError, ValueError, ConnectionError) as exc:
                log.warning("AGI request from %s: no complete environment (%s)", peer, exc)
                self.failed += 1
                return
            if headers is None:
                log.info("AGI connection from %s closed before its environment", peer)
                self.failed += 1
                return
            target = headers.get("agi_network_script", "")
            script, _, query = target.partition("?")
            script = script.strip("/")
            session = AgiSession(self, headers, reader, writer, script, dict(parse_qsl(query)))
            route = self._route.get(script)
            if route is None:
                route = self._route.get("*")  # the fallback answers ERROR on a live channel
            self.sessions += 1
            await route(session)
        except ChannelGone as exc:
            log.info("AGI session from %s ended: channel gone (%s)", peer, exc)
        except Exception:
            self.failed += 1
            log.exception("AGI session from %s failed", peer)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()


async def serve(app: AgiApplication, host: str, port: int) -> asyncio.Server:
    return await asyncio.start_server(app.handler, host, port, limit=MAX_LINE)
