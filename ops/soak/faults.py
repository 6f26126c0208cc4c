"""The fault schedules of the soak profiles: (second, fault, seconds it lasts)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after the traffic starts
    kind: str
    lasts: float = 0.0  # how long the server stays down / stopped


SHORT = [
    Fault(15, "credit-burst"),
    Fault(20, "kill-listener"),
    Fault(32, "kill-worker1"),
    Fault(42, "kill-reconciler"),
    Fault(52, "redis-shutdown", 5),
    Fault(70, "credit-burst"),
    Fault(72, "kill-worker2"),
    Fault(84, "redis-kill", 5),
    Fault(100, "mariadb-stop", 20),
    Fault(104, "credit-burst"),
    Fault(130, "mariadb-kill", 5),
    Fault(150, "kill-sim", 3),
    Fault(160, "credit-burst"),
]

LONG = [
    Fault(30, "credit-burst"),
    Fault(60, "kill-listener"),
    Fault(100, "kill-worker1"),
    Fault(140, "kill-reconciler"),
    Fault(180, "redis-shutdown", 10),
    Fault(220, "credit-burst"),
    Fault(240, "kill-worker2"),
    Fault(280, "redis-kill", 10),
    Fault(330, "mariadb-stop", 60),
    Fault(350, "credit-burst"),
    Fault(430, "mariadb-kill", 10),
    Fault(490, "kill-sim", 5),
    Fault(540, "kill-listener"),
    Fault(560, "credit-burst"),
    Fault(600, "kill-worker1"),
    Fault(601, "kill-worker2"),
    Fault(640, "redis-shutdown", 20),
    Fault(700, "kill-reconciler"),
    Fault(720, "mariadb-stop", 30),
    Fault(780, "credit-burst"),
    Fault(800, "redis-kill", 5),
    Fault(840, "kill-listener"),
]


@dataclass(frozen=True)
class Profile:
    name: str
    traffic_s: float  # the simulator places calls this long
    cps: float
    concurrent: int
    talk: str
    booths: int
    faults: list[Fault]


SMOKE = [Fault(8, "credit-burst"), Fault(10, "kill-worker1"), Fault(14, "redis-kill", 2)]

PROFILES = {
    "smoke": Profile("smoke", 25, 3.0, 30, "3:10", 20, SMOKE),
    "short": Profile("short", 170, 4.0, 120, "5:40", 100, SHORT),
    "long": Profile("long", 900, 9.0, 500, "20:90", 600, LONG),
}
