"""Every Redis key name of asterbill, in one place (README.md, "Redis keys").

All keys that one reseller's real-time scripts touch carry the hash tag `{r<reseller id>}`, so
they live in one Redis Cluster slot; rates that apply to all resellers live under `{r0}`.
Scripts get their keys in KEYS, never build them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    prefix: str = "ab"

    def tag(self, reseller_id: int) -> str:
        return f"{self.prefix}:{{r{reseller_id}}}"

    def rate_scope(self, table: str, reseller_id: int, group_id: int) -> str:
        """Hash of one rate scope: field `<dialprefix>|<numlen>` -> encoded row."""
        return f"{self.tag(reseller_id)}:rates:{table}:{group_id}"

    def rate_index(self, reseller_id: int) -> str:
        """Set of the rate-scope hashes that exist under this tag (for whole-book swaps)."""
        return f"{self.tag(reseller_id)}:rates:index"

    def rate_tags(self) -> str:
        """Set of the reseller ids that have rate books in Redis (read by the sync only)."""
        return f"{self.prefix}:rates:tags"

    @staticmethod
    def staging(key: str, token: str = "") -> str:
        """Where a new version of `key` is built before the atomic swap (`token`: one per
        rebuild, so two rebuilds never share, rename or delete each other's staging hash)."""
        return f"{key}:staging" + (f":{token}" if token else "")

    def rate_lock(self, reseller_id: int) -> str:
        """Lock held while a rate scope of this tag is read from MySQL and written to Redis
        (whole-scope rebuilds and single-row updates take turns, never interleave)."""
        return f"{self.tag(reseller_id)}:rates:lock"

    # -- credit engine (lua/credit.py) -------------------------------------------------
    def balances(self, reseller_id: int) -> str:
        """Hash: every level of the tag, field `<c|g|r><id>.<attr>` (README, Redis keys)."""
        return f"{self.tag(reseller_id)}:balances"

    def calls(self, reseller_id: int) -> str:
        """Hash: call id -> packed state of each answered, not yet ended call."""
        return f"{self.tag(reseller_id)}:calls"

    def due(self, reseller_id: int) -> str:
        """Sorted set: call id scored by its next block boundary (ms since the epoch)."""
        return f"{self.tag(reseller_id)}:due"

    def ended(self, reseller_id: int) -> str:
        """Hash: call id -> ended record, kept until settlement has it in MySQL."""
        return f"{self.tag(reseller_id)}:ended"

    def meta(self, reseller_id: int) -> str:
        """Hash: call id -> the listener's description of the call (numbers, channel,
        destination, hangup cause), kept until settlement has it in MySQL."""
        return f"{self.tag(reseller_id)}:meta"

    def done(self, reseller_id: int) -> str:
        """Sorted set: id of every call ended under this tag lately, scored by its end time
        (ms); outlives `ended` (trimmed by time, lua/endCall-6.lua) so that a call replayed
        after its settlement is refused instead of charged again."""
        return f"{self.tag(reseller_id)}:done"

    def applied_ops(self, reseller_id: int) -> str:
        """Hash: credit operation id -> kind|level|used before (applied once)."""
        return f"{self.tag(reseller_id)}:ops"

    def last_resync(self) -> str:
        """Hash: the listener's last resync with Asterisk: `at_ms` and `live` (JSON list of
        the uniqueids CoreShowChannels listed), read by `reconcile --check`."""
        return f"{self.prefix}:listener:resync"

    def payers(self) -> str:
        """Hash: payer key (caller id, peer or accountcode) -> `reseller|group|clid`."""
        return f"{self.prefix}:payers"

    # -- card PINs (lua/pins.py, ami_listener/agi/pins.py) ---------------------------------
    def pins(self) -> str:
        """Hash: sha256 of a clid's PIN (hex) -> its payer key (the card or booth number)."""
        return f"{self.prefix}:pins"

    def pin_of(self) -> str:
        """Hash: payer key -> the PIN digest `pins` holds for it (to drop it on a change)."""
        return f"{self.prefix}:pin_of"

    def pin_failures(self, kind: str, ident: str) -> str:
        """Counter of wrong PINs by one caller id (`caller`) or for one card (`card`), kept
        for ASTERBILL_PIN_LOCK_MINUTES after the first failure."""
        return f"{self.prefix}:pinfail:{kind}:{ident}"

    def pin_lockouts(self) -> str:
        """List of JSON events (card locked by too many wrong PINs) for the reconciler, which
        writes them to the card's record in MySQL (workers/pin_lockouts.py)."""
        return f"{self.prefix}:pin_lockouts"

    # -- the web's commands to the listener (hang-up from the booth page) ----------------
    def commands(self) -> str:
        """Stream: commands of the back office to the listener (the listener owns AMI)."""
        return f"{self.prefix}:commands"

    def command_reply(self, command_id: str) -> str:
        """String (JSON, 10 minutes): a command's state, `waiting` until the listener
        writes `done` or `failed`."""
        return f"{self.prefix}:command:{command_id}"

    def command_reader_alive(self) -> str:
        """String with a short expiry, refreshed by a running listener's command reader: the
        booth page's "is a listener there?" (not the heartbeat below, which it would spoil)."""
        return f"{self.prefix}:commands:alive"

    def listener_heartbeat(self) -> str:
        """String: ms since the epoch, written every 0.2 s by the listener following calls;
        where the next listener ends the calls that ended while none ran."""
        return f"{self.prefix}:listener:alive"
