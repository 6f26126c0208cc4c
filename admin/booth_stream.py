"""Live booth pages by Server-Sent Events: one reader thread per callshop per process reads
Redis at most once a second (however many pages are open) and fans the changes out to every
subscriber of that shop. A reader stops once its last page has closed.

Each open stream holds one waitress thread (STACK-NOTES.md): `ASTERBILL_WEB_THREADS` sizes
the pool for the pages expected (README, settings).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator

from admin import booth_state
from admin.booth_state import Shop

log = logging.getLogger("asterbill.booths")

READ_EVERY_S = 1.0  # Redis reads per callshop: at most one a second
SETTLED_EVERY_S = 5.0  # MySQL (today's unbilled CDRs): now and then, and when a call ends
KEEPALIVE_S = 15.0  # a comment line, so a closed page is noticed and proxies keep the stream


class Subscriber:
    def __init__(self, show_cost: bool) -> None:
        self.show_cost = show_cost
        self.messages: queue.Queue = queue.Queue(maxsize=100)

    def send(self, message: dict) -> None:
        message = booth_state.for_role(message, self.show_cost)
        if not message:
            return
        try:
            self.messages.put_nowait(message)
        except queue.Full:  # a page that stopped reading: it reloads when it comes back
            log.info("booth page subscriber too slow; message dropped")


class Reader(threading.Thread):
    """Reads one callshop's live state and tells its subscribers what changed."""

    def __init__(self, hub: Hub, shop: Shop) -> None:
        super().__init__(name=f"booths-{shop.group_id}", daemon=True)
        self.hub = hub
        self.shop = shop
        self.subscribers: set[Subscriber] = set()
        self.last: dict | None = None
        self.reads = 0  # Redis round trips (for the benchmark and tests)

    def run(self) -> None:
        settled, settled_at, calls = None, 0.0, None
        while True:
            with self.hub.lock:
                if not self.subscribers:
                    if self.hub.readers.get(self.shop.group_id) is self:
                        del self.hub.readers[self.shop.group_id]
                    return
            started = time.monotonic()
            try:
                live = booth_state.read_redis(self.hub.client, self.hub.keys, self.shop)
                self.reads += 1
                if (
                    settled is None
                    or started - settled_at >= SETTLED_EVERY_S
                    or (set(live["calls"]) != calls)
                ):
                    settled, settled_at = self.hub.settled(self.shop.group_id), started
                    calls = set(live["calls"])
                now = self.hub.snapshot(self.shop, live, settled, int(time.time() * 1000))
                diff = booth_state.changes(self.last, now)
                self.last = now
                if diff:
                    with self.hub.lock:
                        subscribers = list(self.subscribers)
                    for subscriber in subscribers:
                        subscriber.send(diff)
            except Exception:  # Redis or MySQL away: the pages keep their last state
                log.exception("booth reader of shop %d", self.shop.group_id)
            time.sleep(max(0.0, READ_EVERY_S - (time.monotonic() - started)))


class Hub:
    """Every reader of this process, by callshop id."""

    def __init__(self, client, keys, settled: Callable[[int], dict], snapshot=None) -> None:
        self.client = client
        self.keys = keys
        self.settled = settled
        self.snapshot = snapshot or booth_state.snapshot
        self.lock = threading.Lock()
        self.readers: dict[int, Reader] = {}

    def subscribe(self, shop: Shop, show_cost: bool) -> tuple[Reader, Subscriber]:
        subscriber = Subscriber(show_cost)
        with self.lock:
            reader = self.readers.get(shop.group_id)
            if reader is not None and reader.shop != shop:  # booths changed: a new reader
                reader = None
            if reader is None:
                reader = Reader(self, shop)
                self.readers[shop.group_id] = reader
                reader.subscribers.add(subscriber)
                reader.start()
            else:
                reader.subscribers.add(subscriber)
                if reader.last is not None:  # a later page starts from the whole state
                    subscriber.send(reader.last)
        return reader, subscriber

    def unsubscribe(self, reader: Reader, subscriber: Subscriber) -> None:
        with self.lock:
            reader.subscribers.discard(subscriber)

    def stream(self, shop: Shop, show_cost: bool) -> Iterator[str]:
        """The SSE body of one open page."""
        reader, subscriber = self.subscribe(shop, show_cost)
        try:
            yield "retry: 3000\n\n"
            while True:
                try:
                    message = subscriber.messages.get(timeout=KEEPALIVE_S)
                except queue.Empty:
                    yield ": keepalive\n\n"
                    continue
                yield f"data: {json.dumps(message, separators=(',', ':'))}\n\n"
        finally:
            self.unsubscribe(reader, subscriber)
