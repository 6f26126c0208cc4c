"""The calling-card IVR, `AGI(agi://HOST/card[,DIAL])`.

A caller id that is a known clid (a card or a booth) is its own payer. Otherwise the caller
types the card number and its PIN (DTMF, `#` ends each), three tries per call, bounded per
caller id and per card (ami_listener/agi/pins.py). Then: the balance, the number to call,
the same admission as `admit`, the minutes left for that destination; the channel's payer
field (caller id number or account code) is set to the card so the listener bills it. With
DIAL (a Dial target with `{number}`, e.g. `PJSIP/{number}@trunk`), the IVR dials itself with
`L(MAXSEC000)`; without, the dialplan dials on the variables (README, FastAGI).
"""

from __future__ import annotations

import asyncio
import logging

from ami_listener.agi import prompts
from ami_listener.agi.admission import Status, payer_key
from ami_listener.agi.pins import PinGuard
from ami_listener.agi.protocol import AgiSession
from ami_listener.agi.scripts import ScriptError
from lua.credit import Payer

log = logging.getLogger("asterbill.agi")

TRIES = 3  # PIN tries in one call
DIGITS_TIMEOUT_MS = 10_000
SOUND_OF_STATUS = {
    Status.LOCKED: prompts.LOCKED,
    Status.NO_RATE: prompts.NO_RATE,
    Status.UNKNOWN: prompts.UNKNOWN,
    Status.ERROR: prompts.GOODBYE,
}


class CardIvr:
    def __init__(self, pins: PinGuard) -> None:
        self.pins = pins

    async def run(self, session: AgiSession, scripts) -> None:
        settings = scripts.settings
        await session.command("ANSWER")
        caller = session.headers.get("agi_callerid", "")
        own = payer_key(session.headers, settings.payer_field)
        payer = await asyncio.to_thread(scripts.admitter.engine.find_payer, own) if own else None
        card = own
        if payer is None:
            if settings.payer_field == "peer":
                # A peer cannot be changed from the dialplan: the card could not be billed.
                raise ScriptError(
                    "the card IVR needs ASTERBILL_PAYER_FIELD callerid or accountcode"
                )
            card, payer = await self.ask_pin(session, caller)
            if payer is None:
                return
            await self.bill_to(session, settings.payer_field, card)
        available = await asyncio.to_thread(scripts.admitter.available, payer)
        await prompts.say_balance(session, available, settings.display_decimals)
        number = await prompts.get_data(session, prompts.ENTER_NUMBER, 24, DIGITS_TIMEOUT_MS)
        if not number:
            await session.set_variable("ASTERBILL_STATUS", Status.ERROR)
            await session.set_variable("ASTERBILL_REASON", "no number entered")
            await prompts.play(session, prompts.GOODBYE)
            return
        admission = await asyncio.to_thread(scripts.admitter.admit, card, number)
        log.info("card %s -> %s: %s %s", card, number, admission.status, admission.reason)
        await scripts.set_admission(session, admission)
        await session.set_variable("ASTERBILL_NUMBER", number)
        if admission.status != Status.OK:
            await prompts.play(session, SOUND_OF_STATUS.get(admission.status, prompts.NO_CREDIT))
            return
        if admission.maxsec is not None:
            await prompts.say_number(session, admission.maxsec // 60)
            await prompts.play(session, prompts.MINUTES_LEFT)
        target = session.args[0] if session.args else ""
        if "{number}" in target:
            limit = "" if admission.maxsec is None else f",L({admission.maxsec}000)"
            await session.command(f'EXEC Dial "{target.format(number=number)},,{limit[1:]}"')

    async def ask_pin(self, session: AgiSession, caller: str) -> tuple[str, Payer | None]:
        for _ in range(TRIES):
            if await asyncio.to_thread(self.pins.caller_locked, caller):
                log.warning("card IVR: caller %r is locked out (%s)", caller, session.describe())
                return "", await self.refuse(session, "PIN_LOCKED_CALLER")
            card = await prompts.get_data(session, prompts.ENTER_CARD, 20, DIGITS_TIMEOUT_MS)
            if not card:
                continue
            if await asyncio.to_thread(self.pins.card_locked, card):
                log.warning("card IVR: card %s is locked (%s)", card, session.describe())
                return card, await self.refuse(session, "PIN_LOCKED_CARD")
            pin = await prompts.get_data(session, prompts.ENTER_PIN, 20, DIGITS_TIMEOUT_MS)
            payer = await asyncio.to_thread(self.pins.check, card, pin) if pin else None
            if payer is not None:
                await asyncio.to_thread(self.pins.succeeded, caller, card)
                return card, payer
            by_caller, by_card = await asyncio.to_thread(self.pins.failed, caller, card)
            log.info(
                "card IVR: wrong PIN for card %s from %r (%d, %d)", card, caller, by_caller, by_card
            )
            await prompts.play(session, prompts.WRONG_PIN)
        await session.set_variable("ASTERBILL_STATUS", Status.UNKNOWN)
        await session.set_variable("ASTERBILL_REASON", "WRONG_PIN")
        await prompts.play(session, prompts.GOODBYE)
        return "", None

    async def refuse(self, session: AgiSession, reason: str) -> None:
        await session.set_variable("ASTERBILL_STATUS", Status.LOCKED)
        await session.set_variable("ASTERBILL_REASON", reason)
        await prompts.play(session, prompts.LOCKED)

    @staticmethod
    async def bill_to(session: AgiSession, payer_field: str, card: str) -> None:
        """The listener finds the payer by this field at DialBegin: make it the card."""
        if payer_field == "accountcode":
            await session.set_variable("CHANNEL(accountcode)", card)
        else:
            await session.set_variable("CALLERID(num)", card)
