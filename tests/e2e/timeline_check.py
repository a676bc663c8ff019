#!/usr/bin/env python3
"""Checks a syncbn-train --timeline file: python3 timeline_check.py FILE RANKS [--overlap].

The trace must parse as JSON; hold complete events ("ph": "X") of exactly RANKS processes
(pid 0..RANKS-1) with non-negative durations; have spans that nest on every (pid, tid): two
spans either are disjoint or one contains the other (1 ns slack for the microsecond floats);
and have on every rank the phases of a step (data, forward, backward, optimizer, step).
With --overlap, every rank also has a gradient bucket allreduce that starts inside a backward
span before that backward's wait for the buckets: communication overlapping computation.
Exits 1 with a message naming the first failure."""
import json
import sys

SLACK_US = 1e-3


def fail(message):
    print(f"timeline check: {message}")
    sys.exit(1)


def check_nesting(spans, where):
    stack = []
    for span in sorted(spans, key=lambda s: (s["ts"], -s["dur"])):
        end = span["ts"] + span["dur"]
        while stack and stack[-1][1] <= span["ts"] + SLACK_US:
            stack.pop()
        if stack and end > stack[-1][1] + SLACK_US:
            fail(f"{where}: '{span['name']}' [{span['ts']}, {end}] overlaps "
                 f"'{stack[-1][0]}' ending at {stack[-1][1]} without nesting in it")
        stack.append((span["name"], end))


def main():
    if len(sys.argv) < 3:
        fail("usage: timeline_check.py FILE RANKS [--overlap]")
    path, ranks = sys.argv[1], int(sys.argv[2])
    with open(path, encoding="utf-8") as file:
        events = json.load(file)["traceEvents"]
    spans = [e for e in events if e.get("ph") == "X"]
    pids = sorted({e["pid"] for e in spans})
    if pids != list(range(ranks)):
        fail(f"expected pids {list(range(ranks))}, got {pids}")
    for span in spans:
        if span["dur"] < 0 or span["ts"] < -SLACK_US:
            fail(f"negative time in {span}")
    tracks = {}
    for span in spans:
        tracks.setdefault((span["pid"], span["tid"]), []).append(span)
    for (pid, tid), track in sorted(tracks.items()):
        check_nesting(track, f"pid {pid} tid {tid}")
    for pid in pids:
        names = {s["name"] for s in spans if s["pid"] == pid}
        missing = {"data", "forward", "backward", "optimizer", "step"} - names
        if missing:
            fail(f"rank {pid} has no span {sorted(missing)}")
    if "--overlap" in sys.argv[3:]:
        for pid in pids:
            mine = [s for s in spans if s["pid"] == pid]
            backwards = [s for s in mine if s["name"] == "backward"]
            waits = [s for s in mine if s["name"] == "wait for gradient buckets"]
            buckets = [s for s in mine if s["name"] == "gradient bucket allreduce"]
            overlapped = 0
            for backward in backwards:
                end = backward["ts"] + backward["dur"]
                inside = [w["ts"] for w in waits if backward["ts"] <= w["ts"] <= end]
                compute_end = min(inside) if inside else end
                overlapped += sum(1 for b in buckets if backward["ts"] <= b["ts"] < compute_end)
            if overlapped == 0:
                fail(f"rank {pid}: no gradient bucket started while backward computed")
            print(f"rank {pid}: {overlapped} of {len(buckets)} bucket allreduces start during "
                  f"backward's computation")
    print(f"timeline ok: {len(spans)} spans, {ranks} ranks, {len(tracks)} tracks")


if __name__ == "__main__":
    main()
