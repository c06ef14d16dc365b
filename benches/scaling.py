"""Thread scaling of fastrnn and torch (SPEC §4; the "speed" issue's 1, 2, 4, 8, 16 threads table).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benches.scaling [--threads 1,2,4,8,16]
        [--shapes gnmt,large] [--cells gru,rnn] [--rounds 2] [--json PATH]

Made for a machine with many cores (the 16-core device machine: build there with
`pip install --no-build-isolation --no-deps .`, it has no network). Thread counts above the usable
cores are skipped. Every measurement follows benches.orchestrate's protocol (one worker process per
contender, alternating rounds, medians). Prints, per cell, shape and pass, the time at each thread
count, torch/fastrnn at each, and fastrnn's speedup over its own 1-thread time.
"""
import argparse
import json
import os
import sys

from .contenders import CONTENDERS
from .orchestrate import measure
from .tables import markdown_line
from .workloads import CELLS, default_threads, parse_choices, parse_shapes, workloads


def _ints(text):
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got {text!r}")
    return values


def _ms(seconds):
    return "—" if seconds is None else f"{seconds * 1e3:.3g}"


def _ratio(a, b):
    return "—" if a is None or b is None else f"{a / b:.2f}×"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benches.scaling", description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=_ints, default=[1, 2, 4, 8, 16])
    ap.add_argument("--shapes", default="gnmt,large", type=parse_shapes)
    ap.add_argument("--cells", default="gru,rnn", type=lambda t: parse_choices("cell", t, CELLS))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--min-time", type=float, default=0.3)
    ap.add_argument("--json", metavar="PATH")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    usable = default_threads()
    counts = [n for n in args.threads if n <= usable]
    if not counts:
        raise SystemExit(f"none of the thread counts {args.threads} fits the {usable} usable cores")
    ws = workloads(args.cells, args.shapes)
    names = [n for n in ("fastrnn", "torch") if n in CONTENDERS]
    times = {}                                  # (contender, workload key, threads) -> seconds
    for n in counts:
        res = measure({name: ws for name in names}, threads=n, rounds=args.rounds,
                      min_time=args.min_time, progress=lambda m: print(f"[{n} threads] {m}", file=sys.stderr))
        for name in names:
            for w in ws:
                times[(name, w.key, n)] = res.time(name, w)
    head = ["cell", "shape", "pass"] + [f"fastrnn {n}t ms" for n in counts] + [f"torch {n}t ms" for n in counts] \
        + [f"torch/fastrnn {n}t" for n in counts] + [f"fastrnn {n}t speedup" for n in counts]
    print(markdown_line(head))
    print("|" + "---|" * len(head))
    rows = []
    for w in ws:
        f = [times[("fastrnn", w.key, n)] for n in counts]
        t = [times.get(("torch", w.key, n)) for n in counts]
        line = [w.cell, w.shape, w.phase] + [_ms(v) for v in f] + [_ms(v) for v in t] \
            + [_ratio(b, a) for a, b in zip(f, t)] + [_ratio(f[0], v) for v in f]
        print(markdown_line(line))
        rows.append({"workload": w.key, "threads": counts, "fastrnn_s": f, "torch_s": t})
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"cpu_count": os.cpu_count(), "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
