"""The credit-failure policy: what happens to calls while Redis (the credit store) does not
answer. Modelled on online charging's Credit-Control-Failure-Handling (Diameter credit
control, RFC 4006 section 5.7; 3GPP TS 32.299), chosen by `ASTERBILL_CREDIT_FAILURE`:

- `terminate` (the default, the safe one): a call dialled while Redis is down is refused at
  once (hung up before answer, reason CREDIT_UNAVAILABLE, recorded at cost 0); a running call
  with a prepaid level or a booth deposit is hung up at the end of what it has paid, from the
  paid-until time the listener keeps for each live call (the scripts' answers), just as Redis
  would have done; a call answered while Redis is down has paid nothing yet and is hung up at
  once. Postpaid and no-limit calls run on and are billed when Redis is back.
- `retry_and_terminate`: as `terminate`, but a dial (or an answer) first waits up to
  RETRY_WINDOW_S for Redis to come back before it is refused (cut).
- `continue`: nothing is cut for lack of Redis: calls are admitted without a check and run;
  when Redis is back every step is billed in order, for what really happened (the end in mode
  `real`): such a call is flagged `credit_unavailable`, and a level it pushed over its limit is
  flagged `over_limit` and takes no new call until it is back under its limit (a charge).

In every policy no step is lost: a step that failed for lack of Redis is kept, in order per
call, and applied when Redis answers again (Listener: the deferred steps), while other calls'
events go on being handled, so refusals reach Asterisk at once.
"""

from __future__ import annotations

import enum

import redis

RETRY_WINDOW_S = 2.0  # retry_and_terminate: how long a dial or an answer waits for Redis
UNREACHABLE = (redis.ConnectionError, redis.TimeoutError)  # "the credit store failed"
FLAG = "credit_unavailable"  # on calls billed after the fact (continue) or refused at dial


class CreditFailure(enum.StrEnum):
    TERMINATE = "terminate"
    RETRY_AND_TERMINATE = "retry_and_terminate"
    CONTINUE = "continue"

    @property
    def cuts(self) -> bool:
        """Does the listener cut calls itself while Redis is down?"""
        return self is not CreditFailure.CONTINUE

    @property
    def grace_ms(self) -> int:
        """How long a dial or an answer may wait for Redis before it is refused (cut)."""
        return int(RETRY_WINDOW_S * 1000) if self is CreditFailure.RETRY_AND_TERMINATE else 0
