"""Micro-benchmark of the bulk input readers and row validators (no database, no HTTP).

    python bench/bench_readers.py [--rows 200000] [--repeat 3]

Prints CPU microseconds per row (best of ``--repeat``; CPU time, so other processes on a busy
machine disturb it less) for each stage an import runs: reading NDJSON/CSV, reading plus
``event_from_record`` / ``profile_from_record``, and skipping (job resumption).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench_import import event_rows, to_csv, to_ndjson  # noqa: E402

from opencues.readers import Format, event_from_record, profile_from_record, read_records  # noqa: E402


def best_us_per_row(fn, rows: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best / rows * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows = list(event_rows(args.rows, users=50_000))
    payloads = {Format.NDJSON: to_ndjson(rows), Format.CSV: to_csv(rows)}
    for fmt, data in payloads.items():
        print(f"{fmt.value}: {len(data) / args.rows:.0f} bytes/row")

        def read(fmt=fmt, data=data):
            for _ in read_records(io.BytesIO(data), fmt):
                pass

        def read_events(fmt=fmt, data=data):
            for item in read_records(io.BytesIO(data), fmt):
                event_from_record(item[1])

        def read_profiles(fmt=fmt, data=data):
            for item in read_records(io.BytesIO(data), fmt):
                profile_from_record(item[1])

        def skip_all(fmt=fmt, data=data):
            for _ in read_records(io.BytesIO(data), fmt, skip=args.rows):
                pass

        for label, fn in [("read", read), ("read + event_from_record", read_events),
                          ("read + profile_from_record", read_profiles), ("skip every row", skip_all)]:  # fmt: skip
            print(f"  {label:28s} {best_us_per_row(fn, args.rows, args.repeat):6.2f} µs/row (CPU)")


if __name__ == "__main__":
    main()
