"""bytewax on bench_sql's window workload: run by bench_bytewax.py under the benchmark venv's Python.

``python bytewax_flow.py KIND RECORDS.jsonl ROWS.jsonl RUNS`` reads the records into memory, then
runs the flow RUNS times (``tumbling``: 1 s windows per device, count/sum/min/max; ``hopping``: 10 s
windows every 1 s per device, count/max), each from a ``TestingSource`` in batches of 1000 into a
list, with event time from ``ts`` (ms) and windows aligned to the epoch as the SQL ones are. Prints
one JSON object: the seconds of each run, the rows and the late items; writes the last run's rows.
This file imports nothing of EdgeStream: bytewax is never a project dependency.
"""

import json
import sys
import time
from datetime import datetime, timedelta, timezone

import bytewax.operators as op
import bytewax.operators.windowing as win
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def event_time(r):
    return EPOCH + timedelta(milliseconds=r["ts"])


def tumbling_acc():
    return [0, 0.0, float("inf"), float("-inf")]


def tumbling_fold(acc, r):
    v = r["temp"]
    acc[0] += 1
    acc[1] += v
    if v < acc[2]:
        acc[2] = v
    if v > acc[3]:
        acc[3] = v
    return acc


def tumbling_merge(a, b):
    return [a[0] + b[0], a[1] + b[1], min(a[2], b[2]), max(a[3], b[3])]


def hopping_acc():
    return [0, float("-inf")]


def hopping_fold(acc, r):
    acc[0] += 1
    if r["temp"] > acc[1]:
        acc[1] = r["temp"]
    return acc


def hopping_merge(a, b):
    return [a[0] + b[0], max(a[1], b[1])]


def build(kind, records, out, late):
    flow = Dataflow(f"bench_{kind}")
    s = op.input("in", flow, TestingSource(records, batch_size=1000))
    keyed = op.key_on("key", s, lambda r: r["id"])
    # bytewax's watermark is the largest event time seen - this wait + the system time since it was seen,
    # so on a fast replay a pause of the process (a GC, a batch boundary) closes windows early and marks
    # in-order records late; a wait longer than any pause keeps every record in its window (the rows
    # are then the SQL query's, checked by bench_bytewax.py), at the cost of holding windows open longer
    clock = win.EventClock(event_time, wait_for_system_duration=timedelta(seconds=5))
    if kind == "tumbling":
        windower = win.TumblingWindower(length=timedelta(seconds=1), align_to=EPOCH)
        fns = (tumbling_acc, tumbling_fold, tumbling_merge)
    else:
        windower = win.SlidingWindower(length=timedelta(seconds=10), offset=timedelta(seconds=1), align_to=EPOCH)
        fns = (hopping_acc, hopping_fold, hopping_merge)
    w = win.fold_window("agg", keyed, clock, windower, *fns)
    op.output("out", w.down, TestingSink(out))
    op.output("late", w.late, TestingSink(late))
    return flow


def main():
    kind, src, dst, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    with open(src) as f:
        records = [json.loads(line) for line in f]
    secs = []
    for _ in range(runs):
        out, late = [], []
        flow = build(kind, records, out, late)
        t0 = time.perf_counter()
        run_main(flow)
        secs.append(time.perf_counter() - t0)
    with open(dst, "w") as f:
        for key, (_, acc) in out:
            f.write(json.dumps([key, *acc]) + "\n")
    print(json.dumps({"secs": secs, "rows": len(out), "late": len(late)}))


if __name__ == "__main__":
    main()
