"""The real AMI captures (copied from ../shared/ami-captures/ into tests/data/; see its README)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from ami_listener import frames

CAPTURES = Path(__file__).resolve().parent / "data" / "ami-captures"


def capture_files() -> list[Path]:
    files = sorted(CAPTURES.glob("*.jsonl"))
    assert files, f"the AMI captures are missing: {CAPTURES}"
    return files


def messages(path: Path) -> Iterator[tuple[float, str]]:
    """(t, raw) of every message received, in order (the greeting line included)."""
    with open(path) as f:
        next(f)  # the header object
        for line in f:
            item = json.loads(line)
            if "raw" in item:
                yield item["t"], item["raw"]


def events(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(receipt time in microseconds, headers) of every event."""
    for t, raw in messages(path):
        if raw.startswith("Asterisk Call Manager"):
            continue
        headers = frames.parse(raw)
        if "Event" in headers:
            yield round(t * 1_000_000), headers


def billing_cdrs(path: Path) -> dict[str, dict[str, str]]:
    """The booth channels' Dial CDRs (what Asterisk billed), by the channel's Uniqueid."""
    out = {}
    for _, e in events(path):
        if e.get("Event") == "Cdr" and e.get("LastApplication") == "Dial":
            out.setdefault(e["UniqueID"], e)
    return out
