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
    def staging(key: str) -> str:
        """Where a new version of `key` is built before the atomic swap."""
        return f"{key}:staging"
