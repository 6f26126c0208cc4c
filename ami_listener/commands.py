"""The listener's side of the command stream (`Keys.commands`): the back office never logs in
to AMI; it writes a command (hang-up from the booth page) and this reader, a task of the
listener, sends the AMI action on the listener's own connection and writes the result to
the command's reply key (admin/booth_commands.py reads it).

redis-py pitfall (STACK-NOTES.md): XREAD BLOCK on a client whose socket_timeout is shorter
than the block raises TimeoutError; this reader's own client waits BLOCK_MS plus a margin.
A heartbeat key (PX HEARTBEAT_MS, refreshed every loop) tells the web a listener is there.
"""

from __future__ import annotations

import asyncio
import json
import logging

import redis

from ami_listener.billing import HangupRequest
from lua.keys import Keys
from ops import redis_server

log = logging.getLogger("asterbill.commands")

BLOCK_MS = 1000  # one XREAD waits at most this long, then the heartbeat is refreshed
SOCKET_TIMEOUT_S = BLOCK_MS / 1000 + 4  # deliberately longer than the block
HEARTBEAT_MS = 5000  # no refresh for this long: the web says "no listener"
REPLY_KEEP_S = 600


class CommandReader:
    def __init__(self, listener, client: redis.Redis | None = None) -> None:
        settings = listener.settings
        self.listener = listener
        self.keys = Keys(settings.key_prefix)
        self.client = client or redis_server.connect(
            settings.redis_url, socket_timeout=SOCKET_TIMEOUT_S
        )
        self.done = 0  # commands answered (tests read it)

    async def run(self) -> None:
        """Forever: beat, read the next commands, run them. Redis away: retry each second
        (commands written meanwhile are answered by the web's timeout, never run late)."""
        last = None
        while True:
            try:
                if last is None:
                    last = await asyncio.to_thread(self._tail)
                await asyncio.to_thread(self._beat)
                entries = await asyncio.to_thread(
                    self.client.xread, {self.keys.commands(): last}, 20, BLOCK_MS
                )
                for _stream, messages in entries or []:
                    for entry_id, fields in messages:
                        last = entry_id
                        await self.execute(_decode(fields))
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("command stream unreadable: %s", exc)
                last = None  # start after what is there once Redis is back
                await asyncio.sleep(1)

    def _tail(self):
        """The id after which commands are new (those older than this listener are stale)."""
        newest = self.client.xrevrange(self.keys.commands(), count=1)
        return newest[0][0] if newest else "0-0"

    def _beat(self) -> None:
        self.client.set(self.keys.command_reader_alive(), "1", px=HEARTBEAT_MS)

    async def execute(self, command: dict[str, str]) -> None:
        command_id = command.get("id", "")
        if command.get("kind") != "hangup" or not command_id:
            log.warning("unknown command %r ignored", command)
            return
        reply = await self.hang_up(command.get("call_id", ""))
        await asyncio.to_thread(
            self.client.set,
            self.keys.command_reply(command_id),
            json.dumps(reply),
            ex=REPLY_KEEP_S,
        )
        self.done += 1

    async def hang_up(self, call_id: str) -> dict[str, str]:
        """AMI Hangup by the call's Uniqueid on the listener's connection; the answer."""
        from ami_listener.service import AmiUnavailable, channel_of

        request = HangupRequest("", call_id, "web")
        self.listener.hangups.append(request)
        target = channel_of(request)
        if not target:
            return {"status": "failed", "why": "no call"}
        try:
            answer = await self.listener.action(
                {"Action": "Hangup", "Channel": target, "Cause": "16"}
            )
        except (AmiUnavailable, TimeoutError) as exc:
            return {"status": "failed", "why": str(exc) or "Asterisk did not answer"}
        if answer.get("Response") == "Success":
            log.info("call %s hung up from the booth page", call_id)
            return {"status": "done"}
        return {"status": "failed", "why": answer.get("Message", "refused")}


def _decode(fields: dict) -> dict[str, str]:
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in fields.items()
    }
