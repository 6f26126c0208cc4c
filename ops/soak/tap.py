"""An independent AMI tap: the ground truth of the soak.

Its own AMI connection to the simulator (not the listener's): every booth call Asterisk
placed (DialBegin), how its dial ended (DialEnd), its end (Hangup) and Asterisk's own CDR
(`Cdr` event: BillableSeconds, Disposition). Reconnects when the simulator restarts.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass

from ami_listener import frames


@dataclass
class TapCall:
    uniqueid: str
    booth: str
    number: str
    dial_status: str = ""
    hung_up: bool = False
    billsec: int | None = None  # Asterisk's BillableSeconds (Cdr event)
    disposition: str = ""


class AmiTap:
    def __init__(self, port: int, user: str, secret: str) -> None:
        self.port, self.user, self.secret = port, user, secret
        self.calls: dict[str, TapCall] = {}
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.connected = threading.Event()
        self.thread = threading.Thread(target=self._run, name="ami-tap", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()

    def snapshot(self) -> dict[str, TapCall]:
        with self.lock:
            return dict(self.calls)

    def _run(self) -> None:
        while not self.stopped.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                    sock.settimeout(1.0)
                    self._session(sock)
            except OSError:
                pass
            self.connected.clear()
            time.sleep(0.2)

    def _session(self, sock: socket.socket) -> None:
        login = frames.build(
            [("Action", "Login"), ("Username", self.user), ("Secret", self.secret)]
        )
        sock.sendall(login)
        buffer = b""
        while not self.stopped.is_set():
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                return
            buffer += data
            while b"\r\n\r\n" in buffer:
                raw, buffer = buffer.split(b"\r\n\r\n", 1)
                text = raw.decode("utf-8", "replace")
                if text.startswith("Asterisk Call Manager"):
                    text = text.split("\r\n", 1)[1] if "\r\n" in text else ""
                if not text.strip():
                    continue
                with contextlib.suppress(frames.FrameError):
                    self._event(frames.parse(text))

    def _event(self, e: dict[str, str]) -> None:
        """A booth call is known from any of its events: the tap may log in a moment after
        the first call began (the listener's login starts the simulator's calls)."""
        kind = e.get("Event")
        if e.get("Response") == "Success":
            self.connected.set()
        if kind == "Cdr":
            uniqueid, booth, number = e.get("UniqueID", ""), e.get("Source", ""), ""
            number = e.get("Destination", "")
        else:
            uniqueid, booth = e.get("Uniqueid", ""), e.get("CallerIDNum", "")
            number = e.get("Exten", "")
        if kind not in ("DialBegin", "DialEnd", "Hangup", "Cdr") or not booth.startswith("8"):
            return
        if kind != "Cdr" and not e.get("Channel", "").startswith("SIP/8"):
            return
        with self.lock:
            call = self.calls.get(uniqueid)
            if call is None:
                call = self.calls[uniqueid] = TapCall(uniqueid, booth, number)
            if kind == "DialEnd":
                call.dial_status = e.get("DialStatus", "")
            elif kind == "Hangup":
                call.hung_up = True
            elif kind == "Cdr":
                call.hung_up = True
                call.billsec = int(e.get("BillableSeconds") or 0)
                call.disposition = e.get("Disposition", "")
