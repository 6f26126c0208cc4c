"""The asterbill processes of the soak, each supervised as systemd or honcho would: a process
that exits is started again after a short delay. A restart after a kill of the fault
schedule is expected; any other exit is counted as a process that needed a hand."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ASTERBILL = str(Path(sys.executable).with_name("asterbill"))
RESTART_AFTER_S = 1.0


class Supervised:
    def __init__(self, name: str, args: list[str], env: dict, log: Path) -> None:
        self.name, self.args, self.env, self.log = name, args, env, log
        self.process: subprocess.Popen | None = None
        self.killed_by_schedule = False
        self.unexpected_exits: list[str] = []
        self.restarts = 0
        self.held = threading.Event()  # the schedule holds it down (e.g. simulator gone)
        self.stopping = False

    def start(self) -> None:
        out = self.log.open("ab")
        self.process = subprocess.Popen(
            [ASTERBILL, *self.args],
            env=self.env,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )

    def kill(self) -> None:
        """kill -9 by the fault schedule (its whole process group)."""
        if self.process is not None and self.process.poll() is None:
            self.killed_by_schedule = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)

    def stop(self) -> None:
        self.stopping = True
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)

    def supervise(self) -> None:
        """One look: restart it if it is gone."""
        if self.stopping or self.held.is_set() or self.process is None:
            return
        code = self.process.poll()
        if code is None:
            return
        if not self.killed_by_schedule:
            self.unexpected_exits.append(f"{self.name} exited with {code} at {time.strftime('%X')}")
        self.killed_by_schedule = False
        time.sleep(RESTART_AFTER_S)
        self.restarts += 1
        self.start()
