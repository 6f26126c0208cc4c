"""The AGI scripts: `admit`, `balance`, `card`, and the answer to an unknown script name.

Every script runs under `guarded`: whatever goes wrong (bad input, Redis away, a bug) is
logged with the session's channel and, while the channel is still there, answered with
ASTERBILL_STATUS=ERROR, so the dialplan always finds a status after AGI() returns.
"""

from __future__ import annotations

import asyncio
import functools
import logging

from ami_listener.agi import prompts
from ami_listener.agi.admission import Admission, Admitter, Status, payer_key
from ami_listener.agi.protocol import AgiApplication, AgiSession, BadReply, ChannelGone
from ops.settings import Settings

log = logging.getLogger("asterbill.agi")


class ScriptError(Exception):
    """Bad input to a script (a missing argument...): logged, answered with ERROR."""


def guarded(script):
    @functools.wraps(script)
    async def run(self, session: AgiSession) -> None:
        try:
            await script(self, session)
        except ChannelGone:
            raise  # nothing left to answer; the server logs it
        except (ScriptError, BadReply) as exc:
            log.error("AGI %s: %s", session.describe(), exc)
            await _answer_error(session, str(exc))
        except Exception:
            log.exception("AGI %s failed", session.describe())
            await _answer_error(session, "internal error")

    return run


async def _answer_error(session: AgiSession, reason: str) -> None:
    if session.alive:
        await session.set_variable("ASTERBILL_STATUS", Status.ERROR)
        await session.set_variable("ASTERBILL_REASON", reason[:80])


class AgiScripts:
    def __init__(self, admitter: Admitter, settings: Settings, card=None) -> None:
        self.admitter, self.settings, self.card_ivr = admitter, settings, card

    def install(self, app: AgiApplication) -> None:
        app.add_route("admit", self.admit)
        app.add_route("balance", self.balance)
        app.add_route("card", self.card)
        app.add_route("*", self.unknown)

    async def unknown(self, session: AgiSession) -> None:
        log.error("AGI %s: unknown script %r", session.describe(), session.script)
        await _answer_error(session, f"unknown script {session.script!r}")

    async def set_admission(self, session: AgiSession, admission: Admission) -> None:
        for name, value in admission.variables().items():
            await session.set_variable(name, value)

    @guarded
    async def admit(self, session: AgiSession) -> None:
        """AGI(agi://HOST/admit[,NUMBER]): NUMBER defaults to ${EXTEN}."""
        number = dialled_number(session)
        payer = payer_key(session.headers, self.settings.payer_field)
        admission = await asyncio.to_thread(self.admitter.admit, payer, number)
        log.info(
            "admit %s -> %s: %s %s maxsec=%s (%s)",
            payer or "?",
            number,
            admission.status,
            admission.reason,
            admission.maxsec,
            session.describe(),
        )
        await self.set_admission(session, admission)

    @guarded
    async def balance(self, session: AgiSession) -> None:
        """AGI(agi://HOST/balance): says the caller's available credit."""
        payer_name = payer_key(session.headers, self.settings.payer_field)
        payer = await asyncio.to_thread(self.admitter.engine.find_payer, payer_name)
        if payer is None:
            log.info("balance for %r: no clid matches (%s)", payer_name, session.describe())
            await session.set_variable("ASTERBILL_STATUS", Status.UNKNOWN)
            await prompts.play(session, prompts.UNKNOWN)
            return
        available = await asyncio.to_thread(self.admitter.available, payer)
        await session.set_variable("ASTERBILL_STATUS", Status.OK)
        await session.set_variable("ASTERBILL_BALANCE", "" if available is None else available)
        await prompts.say_balance(session, available, self.settings.display_decimals)

    @guarded
    async def card(self, session: AgiSession) -> None:
        if self.card_ivr is None:
            raise ScriptError("the card IVR is not configured")
        await self.card_ivr.run(session, self)


def dialled_number(session: AgiSession) -> str:
    """Argument 1, else `?number=` of the URL, else ${EXTEN}; digits only."""
    args = session.args
    number = (args[0] if args else "") or session.query.get("number", "")
    number = number or session.headers.get("agi_extension", "")
    if not number.strip():
        raise ScriptError("no number: pass it as argument 1 or dial from an extension")
    return number.strip()
