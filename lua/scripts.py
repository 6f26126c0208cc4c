"""Loads the .lua files once as redis-py Script objects (EVALSHA, reloaded after a flush).

A line `--- @include "name"` is replaced by lua/include/name.lua when the file is read, so the
pricing code exists once and every script that prices carries the same text.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import redis
from redis.commands.core import Script

LUA_DIR = Path(__file__).parent
INCLUDE = re.compile(r'^--- @include "([a-zA-Z0-9_]+)"$', re.MULTILINE)


@cache
def source(name: str) -> str:
    """The text of lua/<name>.lua with its includes resolved."""
    text = (LUA_DIR / f"{name}.lua").read_text()
    return INCLUDE.sub(lambda m: (LUA_DIR / "include" / f"{m[1]}.lua").read_text(), text)


class Scripts:
    """Every script, registered on one client: `Scripts(client).price_calls(args=[...])`."""

    def __init__(self, client: redis.Redis) -> None:
        self.price_calls: Script = client.register_script(source("priceCalls-0"))
        self.lookup_rates: Script = client.register_script(source("lookupRates-n"))
        self.authorize_call: Script = client.register_script(source("authorizeCall-1"))
        self.answer_call: Script = client.register_script(source("answerCall-6"))
        self.extend_call: Script = client.register_script(source("extendCall-4"))
        self.extend_due: Script = client.register_script(source("extendDue-4"))
        self.end_call: Script = client.register_script(source("endCall-6"))
        self.credit_op: Script = client.register_script(source("creditOp-2"))
        self.correct_call: Script = client.register_script(source("correctCall-2"))
