"""Reading Asterisk's Master.csv for `asterbill cdr-sync`: `python -m ops.bench.cdr_sync
[--lines 1000000] [--zone UTC]`.

Writes a Master.csv of N lines (the rows of capture 25, each with its own uniqueid), then
reads it as cdr-sync does (every line checked, the rows of 100 flagged calls kept) and
prints lines per second. No server is needed.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from workers.asterisk_cdrs import read_master_csv, write_master_csv

CAPTURE = Path(__file__).parents[2] / "tests/data/ami-captures/25-listener-disconnected.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--zone", default="UTC")
    args = parser.parse_args()
    sample = json.loads(CAPTURE.open().readline())["observed"]["cdr_csv"]
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "Master.csv"
        with path.open("w") as out:
            for start in range(0, args.lines, 10_000):
                rows = [
                    {
                        **sample[n % len(sample)],
                        "src": sample[n % len(sample)]["source"],
                        "dst": sample[n % len(sample)]["destination"],
                        "uniqueid": f"1796{n}.{n}",
                    }
                    for n in range(start, min(start + 10_000, args.lines))
                ]
                out.write(write_master_csv(rows))
        wanted = {f"1796{n}.{n}" for n in range(0, args.lines, max(1, args.lines // 100))}
        began = time.perf_counter()
        source = read_master_csv(path, args.zone, wanted)
        took = time.perf_counter() - began
    print(
        f"{args.lines} lines ({args.zone}) read in {took:.2f} s: "
        f"{args.lines / took:,.0f} lines/s; {len(source.records)} kept, "
        f"{source.other_rows} of other calls, {len(source.errors)} bad"
    )


if __name__ == "__main__":
    main()
