"""The soak itself: servers, processes, traffic, faults, drain, report (see __main__)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import shutil
import subprocess
import threading
import time
from decimal import Decimal
from pathlib import Path

import redis
import yaml
from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import sessionmaker

from lua.credit import CreditEngine
from lua.keys import Keys
from ops.soak.faults import Fault, Profile
from ops.soak.procs import ASTERBILL, Supervised
from ops.soak.servers import PrivateMariaDB, PrivateRedis, free_port
from ops.soak.tap import AmiTap

PREFIX = "ab"
AMI_USER = "soak"
AMI_SECRET = secrets.token_hex(8)  # the private simulator's, for this run only
NUMBERS = "00493012345678,00442071234567,0086139123456789"
SPARE = 5  # booths 9001..9005: never dialled, for lock / limit / deposit operations


class Soak:
    def __init__(self, profile: Profile, folder: Path) -> None:
        self.profile, self.folder = profile, folder
        (folder / "redis").mkdir()
        self.redis = PrivateRedis(folder / "redis", folder / "redis.log")
        self.maria = PrivateMariaDB(folder / "mariadb", folder / "mariadb.log")
        self.sim_port = free_port()
        self.sim: subprocess.Popen | None = None
        self.sim_seed = 1
        self.procs: list[Supervised] = []
        self.log: list[str] = []
        self.fault_ends: list[tuple[str, float]] = []
        self.stall = Stall()
        self.stop = threading.Event()
        self.credit_ops = {"performed": 0, "replayed": 0, "refused": 0, "kept_pending": 0}
        self.t0 = 0.0

    # -- setting up --------------------------------------------------------------------
    def note(self, message: str) -> None:
        line = f"{time.monotonic() - self.t0:7.1f}s {message}" if self.t0 else message
        self.log.append(line)
        print(line, flush=True)

    def env(self) -> dict:
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("ASTERBILL_", "AMI_"))}
        keep.pop("DATABASE_URL", None)
        keep.pop("REDIS_URL", None)
        return {
            **keep,
            "DATABASE_URL": self.maria.url("asterbill"),
            "REDIS_URL": self.redis.url,
            "AMI_HOST": "127.0.0.1",
            "AMI_PORT": str(self.sim_port),
            "AMI_USER": AMI_USER,
            "AMI_SECRET": AMI_SECRET,
            "ASTERBILL_KEY_PREFIX": PREFIX,
            "ASTERBILL_DATA_DIR": str(self.folder),
            "ASTERBILL_LOG_LEVEL": "INFO",
        }

    def cli(self, *args: str) -> None:
        subprocess.run(
            [ASTERBILL, *args], env=self.env(), check=True, capture_output=True, cwd=self.folder
        )

    def setup(self) -> None:
        self.maria.install()
        self.maria.start()
        self.redis.start()
        server = create_engine(self.maria.url(), connect_args={"connect_timeout": 5})
        with server.connect() as conn:
            conn.execute(text("CREATE DATABASE asterbill CHARACTER SET utf8mb4"))
        server.dispose()
        self.cli("db", "upgrade")
        seed = self.folder / "seed.yaml"
        seed.write_text(yaml.safe_dump(seed_of(self.profile.booths)))
        self.cli("seed", str(seed))
        self.db = create_engine(
            self.maria.url("asterbill"),
            connect_args={"connect_timeout": 2, "read_timeout": 3, "write_timeout": 3},
            pool_pre_ping=True,
            pool_recycle=30,
        )
        self.factory = sessionmaker(self.db)
        self.client = redis.Redis(
            port=self.redis.port, protocol=2, socket_timeout=2, socket_connect_timeout=2
        )
        self.credit = CreditEngine(self.client, Keys(PREFIX))
        from schema import Clid

        with self.factory() as session:
            self.clid_ids = dict(session.execute(select(Clid.clid, Clid.id)).all())

    def start_processes(self) -> None:
        env, logs = self.env(), self.folder
        for name, args in (
            ("worker1", ["worker"]),
            ("worker2", ["worker"]),
            ("reconciler", ["reconcile", "--loop", "2", "--provision"]),
            ("listener", ["listener"]),
        ):
            process = Supervised(name, args, env, logs / f"{name}.log")
            process.start()
            self.procs.append(process)
        self.start_sim(self.planned_calls())
        self.wait_listener_login()
        self.tap = AmiTap(self.sim_port, AMI_USER, AMI_SECRET)
        self.tap.start()

    def planned_calls(self) -> int:
        return int(self.profile.traffic_s * self.profile.cps)

    def start_sim(self, calls: int) -> None:
        out = (self.folder / "pbx-sim.log").open("ab")
        p = self.profile
        self.sim = subprocess.Popen(
            [
                ASTERBILL,
                "pbx-sim",
                "--port",
                str(self.sim_port),
                "--user",
                AMI_USER,
                "--secret",
                AMI_SECRET,
                "--booths",
                str(p.booths),
                "--calls",
                str(max(calls, 0)),
                "--cps",
                str(p.cps),
                "--concurrent",
                str(p.concurrent),
                "--talk",
                p.talk,
                "--answer-ratio",
                "0.8",
                "--numbers",
                NUMBERS,
                "--seed",
                str(self.sim_seed),
            ],
            env=self.env(),
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
        self.sim_seed += 1

    def wait_listener_login(self, seconds: float = 60) -> None:
        log = self.folder / "listener.log"
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if log.exists() and "logged in to AMI" in log.read_text(errors="replace"):
                return
            time.sleep(0.1)
        raise RuntimeError("the listener never logged in to the simulator")

    # -- running -----------------------------------------------------------------------
    def run(self) -> dict:
        self.setup()
        self.start_processes()
        self.t0 = time.monotonic()
        self.note(
            f"traffic: {self.planned_calls()} calls at {self.profile.cps}/s, at most "
            f"{self.profile.concurrent} live, {self.profile.booths} booths"
        )
        threading.Thread(target=self._watch, daemon=True).start()
        for fault in self.profile.faults:
            self._sleep_until(fault.at)
            self.apply(fault)
        self.wait_traffic_end()
        drained = self.drain()
        self.stop.set()
        for process in self.procs:
            process.stop()
        return self.report(drained)

    def _sleep_until(self, at: float) -> None:
        while time.monotonic() - self.t0 < at:
            time.sleep(0.1)

    def _watch(self) -> None:
        """Supervision (restarts) and the settlement-stall sampler, twice a second."""
        while not self.stop.is_set():
            for process in self.procs:
                process.supervise()
            self.stall.sample(self)
            time.sleep(0.5)

    def apply(self, fault: Fault) -> None:
        self.note(f"fault: {fault.kind}" + (f" for {fault.lasts:.0f} s" if fault.lasts else ""))
        kind = fault.kind
        if kind.startswith("kill-") and kind != "kill-sim":
            name = kind.removeprefix("kill-")
            next(p for p in self.procs if p.name == name).kill()
            self.fault_ends.append((kind, time.monotonic()))
        elif kind == "redis-shutdown":
            self.redis.shutdown_nosave()
            self._down_then(fault, self.redis.start)
        elif kind == "redis-kill":
            self.redis.kill()
            self._down_then(fault, self.redis.start)
        elif kind == "mariadb-stop":
            self.maria.pause()
            self._down_then(fault, self.maria.resume)
        elif kind == "mariadb-kill":
            self.maria.kill()
            self._down_then(fault, self.maria.start)
        elif kind == "kill-sim":
            placed = len(self.tap.snapshot())
            self.sim.kill()
            self.sim.wait()
            time.sleep(fault.lasts)
            self.start_sim(self.planned_calls() - placed)
            self.fault_ends.append((kind, time.monotonic()))
        elif kind == "credit-burst":
            self.credit_burst()

    def _down_then(self, fault: Fault, back) -> None:
        time.sleep(fault.lasts)
        back()
        self.note(f"fault over: {fault.kind}")
        self.fault_ends.append((fault.kind, time.monotonic()))

    def credit_burst(self, size: int = 20) -> None:
        """Credit operations through the credit service, each sent twice at once and the
        whole burst again a second later (repeated op ids, as a retrying client does)."""
        from workers.credit_ops import CreditRequest, perform

        rnd = random.Random(len(self.log))
        requests = []
        for _ in range(size):
            booth = self.clid_ids[str(8000 + rnd.randrange(1, self.profile.booths + 1))]
            spare = self.clid_ids[str(9000 + rnd.randrange(1, SPARE + 1))]
            choice = rnd.random()
            if choice < 0.4:
                r = CreditRequest("charge", "clid", booth, Decimal(rnd.randrange(1, 500)) / 100)
            elif choice < 0.6:
                r = CreditRequest("refund", "clid", booth, Decimal(rnd.randrange(1, 200)) / 100)
            elif choice < 0.75:
                r = CreditRequest(rnd.choice(["lock", "unlock"]), "clid", spare)
            elif choice < 0.9:
                r = CreditRequest("set_limit", "clid", spare, Decimal(rnd.randrange(1, 100)))
            else:
                r = CreditRequest("set_deposit", "clid", spare, Decimal(rnd.randrange(1, 50)))
            requests.append(r.with_op_id())
        for attempt in range(2):
            for r in requests:
                for _ in range(2):
                    try:
                        result = perform(self.factory, self.credit, r)
                    except Exception as exc:  # MySQL away: the client gets an error
                        self.credit_ops["refused"] += 1
                        if attempt == 0 and _ == 0:
                            self.note(f"credit op refused: {type(exc).__name__}")
                        continue
                    key = "replayed" if result.replayed else "performed"
                    self.credit_ops[key] += 1
                    if not result.applied:
                        self.credit_ops["kept_pending"] += 1
            time.sleep(1)

    def wait_traffic_end(self) -> None:
        deadline = self.t0 + self.profile.traffic_s + 400
        while time.monotonic() < deadline and self.sim.poll() is None:
            time.sleep(1)
        self.note("traffic over")

    def drain(self, seconds: float = 120) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError):
                left = self.left_in_redis()
                if not left["live"] and not left["waiting"]:
                    self.note("drained")
                    return True
            time.sleep(1)
        self.note(f"NOT drained: {self.left_in_redis()}")
        return False

    def left_in_redis(self) -> dict:
        """Calls Redis still holds: live (answered, not ended) and waiting (ended, not
        settled), with a few ids."""
        live = {
            k.decode()
            for r in self.credit.resellers_with_calls("calls")
            for k in self.client.hkeys(self.credit.keys.calls(r))
        }
        waiting = {
            k.decode()
            for r in self.credit.resellers_with_calls("ended")
            for k in self.client.hkeys(self.credit.keys.ended(r))
        }
        return {
            "live": len(live),
            "waiting": len(waiting),
            "examples": sorted(live | waiting)[:5],
        }

    # -- report -------------------------------------------------------------------------
    def report(self, drained: bool) -> dict:
        from ops.soak.report import figures

        out = figures(self, drained)
        out["timeline"] = self.log
        with (self.folder / "tap.jsonl").open("w") as f:  # the ground truth, call by call
            for call in self.tap.snapshot().values():
                f.write(json.dumps(call.__dict__) + "\n")
        return out

    def close(self, keep: bool) -> None:
        self.stop.set()
        for process in self.procs:
            process.stop()
        if self.sim is not None and self.sim.poll() is None:
            self.sim.kill()
        with contextlib.suppress(Exception):
            self.tap.stop()
        for server in (self.redis, self.maria):
            server.resume()
            server.kill()
        if not keep:
            shutil.rmtree(self.folder, ignore_errors=True)


class Stall:
    """The longest time calls waited in Redis while no CDR was written, and how long
    settlement took to resume after each fault was over."""

    def __init__(self) -> None:
        self.last_progress = time.monotonic()
        self.cdrs = -1
        self.longest = 0.0
        self.waiting_max = 0
        self.recoveries: list[tuple[str, float]] = []

    def sample(self, soak: Soak) -> None:
        now = time.monotonic()
        try:
            waiting = sum(
                soak.client.hlen(soak.credit.keys.ended(r))
                for r in soak.credit.resellers_with_calls("ended")
            )
            with soak.factory() as session:
                cdrs = session.execute(text("SELECT COUNT(*) FROM cdrs")).scalar()
        except Exception:
            waiting, cdrs = None, None
        if waiting is not None:
            self.waiting_max = max(self.waiting_max, waiting)
        progressed = cdrs is not None and (cdrs > self.cdrs or waiting == 0)
        if progressed:
            self.cdrs = cdrs
            self.last_progress = now
            while soak.fault_ends:
                kind, ended = soak.fault_ends.pop(0)
                self.recoveries.append((kind, round(max(0.0, now - ended), 1)))
        else:
            self.longest = max(self.longest, now - self.last_progress)


def seed_of(booths: int) -> dict:
    """One reseller, shops of 50 booths; every tenth booth prepaid with 2.00 (some calls are
    cut), every tenth + 5 with a deposit of 3.00; spare booths for credit operations."""
    clids = []
    for i in range(1, booths + SPARE + 1):
        clid = {"clid": str(8000 + i) if i <= booths else str(9000 + i - booths)}
        if i <= booths and i % 10 == 0:
            clid.update(limit_type="prepaid", credit_limit="2")
        if i <= booths and i % 10 == 5:
            clid["deposit"] = "3"
        clids.append(clid)
    groups = [
        {"name": f"shop{n + 1}", "clids": clids[n * 50 : (n + 1) * 50]}
        for n in range((len(clids) + 49) // 50)
    ]
    return {
        "resellers": [{"name": "soak-reseller", "groups": groups}],
        "rates": [
            {
                "table": "customer",
                "rows": [
                    {
                        "dialprefix": "0049",
                        "destination": "Germany",
                        "connectcharge": "0.1",
                        "initblock": 60,
                        "rateinitial": "0.2",
                        "billingblock": 60,
                    },
                    {"dialprefix": "0044", "rateinitial": "0.15", "billingblock": 30},
                    {"dialprefix": "0086", "rateinitial": "0.12", "billingblock": 6},
                    {"dialprefix": "default", "rateinitial": "0.6", "billingblock": 60},
                ],
            },
            {
                "table": "callshop",
                "reseller": "soak-reseller",
                "rows": [{"dialprefix": "00", "rateinitial": "0.08", "billingblock": 1}],
            },
            {
                "table": "reseller",
                "rows": [{"dialprefix": "00", "rateinitial": "0.05", "billingblock": 1}],
            },
        ],
    }
