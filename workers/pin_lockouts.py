"""Cards locked by the FastAGI card IVR after too many wrong PINs (ami_listener/agi/pins.py),
written to MySQL by the reconciler: a `lock` credit operation on the card, through the credit
service, whose comment says why (the IVR never touches MySQL). The operation id comes from
the event, so a replayed event locks once; an event is dropped only after it was written.
"""

from __future__ import annotations

import json
import logging

from sqlalchemy import select

from lua.credit import CreditEngine
from schema import Clid
from workers.credit_ops import CreditRequest, perform

log = logging.getLogger("asterbill.reconciler")


def record_lockouts(factory, credit: CreditEngine, limit: int = 100) -> int:
    key = credit.keys.pin_lockouts()
    done = 0
    for _ in range(limit):
        raw = credit.client.lindex(key, 0)
        if raw is None:
            break
        try:
            event = json.loads(raw)
            card, caller = str(event["card"]), str(event.get("caller", ""))
            failures, at_ms = int(event["failures"]), int(event["at_ms"])
        except (ValueError, KeyError, TypeError):
            log.error("PIN lockout event %r is not readable: dropped", raw)
            credit.client.lpop(key)
            continue
        with factory() as session:
            clid_id = session.scalar(select(Clid.id).where(Clid.clid == card))
        if clid_id is None:
            log.warning("PIN lockout of card %s: no such clid any more", card)
        else:
            perform(
                factory,
                credit,
                CreditRequest(
                    "lock",
                    "clid",
                    clid_id,
                    comment=f"locked by the card IVR: {failures} wrong PINs, last from caller "
                    f"{caller or 'anonymous'}",
                    op_id=f"pinlock-{clid_id}-{at_ms}",
                ),
            )
            log.warning("card %s locked in the ledger after %d wrong PINs", card, failures)
            done += 1
        credit.client.lpop(key)
    return done
