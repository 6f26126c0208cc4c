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


def header(path: Path) -> dict:
    with open(path) as f:
        return json.loads(next(f))


def stream(path: Path) -> Iterator[tuple]:
    """The capture as the listener lives it, in order: `("event", us, headers)`; `("lost",
    us)` when a session ends (its eof, or for 25 the moment the client closed its socket);
    `("snapshot", us, items)` for a CoreShowChannels reply, at its Response (the items follow
    it in the stream and are not repeated as events). `us`: receive time, microseconds."""
    with open(path) as f:
        head = json.loads(next(f))
        items = [json.loads(line) for line in f]
    closed = head.get("observed", {}).get("disconnect", {}).get("t_client_closed_socket")
    snapshots, sessions, ended = set(), 0, True
    epoch = epoch_offset(path)  # a listener's receive clock is epoch time, as Asterisk's
    for n, item in enumerate(items):
        us = round(item["t"] * 1_000_000) + epoch
        if item.get("eof"):
            ended = True
            yield "lost", us
            continue
        if item.get("sent", "").startswith("Action: CoreShowChannels"):
            snapshots.add(frames.parse(item["sent"]).get("ActionID"))
            continue
        raw = item.get("raw")
        if raw is None:
            continue
        if raw.startswith("Asterisk Call Manager"):
            if sessions and not ended:  # the client closed the last session itself
                yield "lost", round((closed or item["t"]) * 1_000_000) + epoch
            sessions, ended = sessions + 1, False
            continue
        headers = frames.parse(raw)
        action_id = headers.get("ActionID")
        if action_id in snapshots and "Response" in headers:
            listed = []
            for later in items[n + 1 :]:
                other = frames.parse(later["raw"]) if "raw" in later else {}
                if other.get("ActionID") != action_id:
                    continue
                if other.get("Event") != "CoreShowChannel":
                    break
                listed.append(other)
            yield "snapshot", us, listed
            continue
        if action_id in snapshots:
            continue  # a listed item or the list's end: given with its snapshot
        if "Event" in headers:
            yield "event", us, headers


def answer_times(path: Path) -> dict[str, int]:
    """Asterisk's answer time (epoch microseconds, what `CDR(answer,u)` gives) of every
    observed call of files 24-28, by booth Uniqueid: its answer `t` moved onto the Timestamp
    clock by the offset of the file's first timestamped event."""
    calls = header(path).get("observed", {}).get("calls", [])
    offset = epoch_offset(path)
    if not offset:
        return {}
    return {
        c["booth_uniqueid"]: round(c["t_answered"] * 1_000_000) + offset
        for c in calls
        if c.get("t_answered") is not None and c.get("booth_uniqueid")
    }


def epoch_offset(path: Path) -> int:
    """Microseconds from the capture's `t` clock to Asterisk's Timestamp clock (the first
    timestamped event's difference); 0 without Timestamp headers."""
    for t, raw in messages(path):
        stamp = frames.timestamp_us(frames.parse(raw)) if raw.startswith("Event") else None
        if stamp is not None:
            return stamp - round(t * 1_000_000)
    return 0
