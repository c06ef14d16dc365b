"""One benchmark worker process (SPEC §4): it times one contender on a list of workloads, or measures
the memory of one training step (--memory), and prints one JSON object per line, {"info": ...}
(what the contender's setup reported) or {"missing": ...} (not installed) first, then one
{"workload": key, ...} per workload: "time_s" and "runs" (benches.timing.time_call), "memory"
(benches.memory.memory_step), "unsupported" (a gap) or "error" (the message; the other workloads
still run). benches.orchestrate starts the workers; one can be run by hand:

    python -m benches.worker --worker torch --threads 2 --workload gru:small:fwd --workload rnn:tiny:train
    python -m benches.worker --worker fastrnn --memory --workload gru:small:train
"""
import argparse
import json
import sys

from .contenders import CONTENDERS, Unsupported
from .memory import memory_step
from .timing import time_call
from .workloads import DTYPES, Workload, default_threads, make_inputs


def worker(name, keys, threads, dtype="float32", min_time=0.3, out=sys.stdout, memory=False):
    """Time `CONTENDERS[name]` on each workload key in this process; one JSON line per result.
    memory=True: measure the memory of one training step instead (memory_step; give one key per
    process, for a clean heap), as {"workload": key, "memory": {...}}."""

    def emit(record):
        print(json.dumps(record), file=out, flush=True)

    contender = CONTENDERS[name]
    try:
        emit({"info": contender.setup(threads)})
    except ImportError as exc:
        emit({"missing": f"not installed ({exc})"})
        return
    for key in keys:
        record = {"workload": key}
        try:
            w = Workload.from_key(key, dtype)
            if memory:
                record["memory"] = memory_step(contender, w)
                emit(record)
                continue
            fn = contender.build(w, make_inputs(w))
            record["time_s"], record["runs"] = time_call(fn, min_time)
        except Unsupported as exc:
            record["unsupported"] = str(exc)
        except Exception as exc:  # reported, and the other workloads still run
            record["error"] = f"{type(exc).__name__}: {exc}"
        fn = None  # free this workload's arrays before the next one is built
        emit(record)


def main(argv=None):
    parser = argparse.ArgumentParser(description="One benchmark worker (run by benches.run).")
    parser.add_argument("--worker", required=True, choices=list(CONTENDERS), help="the contender to time")
    parser.add_argument("--workload", action="append", default=[], help="cell:shape:pass, repeatable")
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--dtype", default="float32", choices=DTYPES)
    parser.add_argument("--min-time", type=float, default=0.3)
    parser.add_argument("--memory", action="store_true",
                        help="measure the memory of one training step of each workload instead of timing")
    args = parser.parse_args(argv)
    for key in args.workload:
        try:
            Workload.from_key(key, args.dtype)
        except ValueError as exc:
            parser.error(str(exc))
    worker(args.worker, args.workload, args.threads, args.dtype, args.min_time, memory=args.memory)


if __name__ == "__main__":
    main()
