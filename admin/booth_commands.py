"""The back office's side of the command stream: the web never logs in to AMI; it writes a
command to Redis (`Keys.commands`), the listener (ami_listener/commands.py) sends the AMI
action and writes the result to the command's reply key. No listener answering: the page
says so within NO_LISTENER_S."""

from __future__ import annotations

import json
import time
import uuid

from lua.keys import Keys

NO_LISTENER_S = 5.0  # a command without a result after this long: no listener took it
REPLY_KEEP_S = 600
STREAM_MAXLEN = 10000


def send_hangup(client, prefix: str, call_id: str, account_id: int | None) -> str:
    """Queue a hang-up of one call (by its Uniqueid); returns the command id."""
    keys = Keys(prefix)
    command_id = uuid.uuid4().hex
    now_ms = int(time.time() * 1000)
    pipe = client.pipeline(transaction=True)
    pipe.set(
        keys.command_reply(command_id),
        json.dumps({"status": "waiting", "sent_ms": now_ms}),
        ex=REPLY_KEEP_S,
    )
    pipe.xadd(
        keys.commands(),
        {
            "id": command_id,
            "kind": "hangup",
            "call_id": call_id,
            "account_id": str(account_id or ""),
            "sent_ms": str(now_ms),
        },
        maxlen=STREAM_MAXLEN,
        approximate=True,
    )
    pipe.execute()
    return command_id


def result(client, prefix: str, command_id: str) -> dict:
    """`done` / `failed` (with `why`) from the listener, `waiting`, or `no_listener` when
    no listener is alive or none answered within NO_LISTENER_S."""
    keys = Keys(prefix)
    raw, alive = client.mget(keys.command_reply(command_id), keys.command_reader_alive())
    if raw is None:
        return {"status": "failed", "why": "unknown command"}
    reply = json.loads(raw)
    if reply["status"] != "waiting":
        return reply
    waited_s = time.time() - reply["sent_ms"] / 1000
    if alive is None or waited_s > NO_LISTENER_S:
        return {"status": "no_listener"}
    return reply
