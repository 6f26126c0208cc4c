"""The fault soak: `python -m ops.soak [--profile short|long] [--out FILE.json]`.

Not part of `make test` (minutes long, and it needs 2 free cores). It starts its own Redis
(append-only file) and MariaDB on private ports and data folders, the PBX simulator at the
profile's load with an independent AMI tap as the ground truth, the listener, two workers
and the reconciler as separate supervised processes; runs the profile's fault schedule
(ops/soak/faults.py); drains; and reports calls placed / answered / CDRs / lost / doubled /
overbilled, prepaid levels and deposits over their limit, price mismatches against the
Python reference, the reconcile result, the longest settlement stall and the slowest
recovery after a fault, and the processes that needed a hand. Traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from ops.soak.faults import PROFILES
from ops.soak.run import Soak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.soak", description=__doc__)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="short")
    parser.add_argument("--cps", type=float, help="override the profile's calls a second")
    parser.add_argument("--concurrent", type=int, help="override the profile's live calls")
    parser.add_argument("--out", type=Path, help="also write the report as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the data folder and logs")
    args = parser.parse_args(argv)
    profile = PROFILES[args.profile]
    if args.cps or args.concurrent:
        from dataclasses import replace

        profile = replace(
            profile,
            cps=args.cps or profile.cps,
            concurrent=args.concurrent or profile.concurrent,
        )
    folder = Path(tempfile.mkdtemp(prefix=f"asterbill-soak-{profile.name}-"))
    print(f"soak {profile.name}: data and logs in {folder}", flush=True)
    started = time.monotonic()
    soak = Soak(profile, folder)
    try:
        report = soak.run()
    finally:
        soak.close(keep=args.keep)
    report["wall_s"] = round(time.monotonic() - started)
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["verdict"] == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
