"""fastrnn against its peers and against the GEMM-bound time, on the standard shapes of SPEC §4.

Run it from the repository root, with OpenBLAS's core-type overrides unset so that BLAS runs its
native kernel (SPEC §4):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benches.run --quick       # ~1-2 min
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benches.run               # every shape
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benches.run --markdown --json bench.json
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benches.run --shapes small,gnmt --cells gru --threads 1
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benches.run --shapes 1x1x256x256 --passes step,step-train \
        --contenders fastrnn,torch,gemm --threads 1      # the single-step cells, one call each
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benches.run --simd avx2   # as an AVX2-only CPU would

--simd LEVEL runs fastrnn's kernels at that instruction-set level (FASTRNN_SIMD) and holds the peers
to it as far as they allow: for avx2, OpenBLAS's Haswell kernel (the GEMM-bound worker and the NumPy
reference; OPENBLAS_CORETYPE=Haswell), torch's ATen kernels, MKL and oneDNN at AVX2
(ATEN_CPU_CAPABILITY, MKL_ENABLE_INSTRUCTIONS, ONEDNN_MAX_CPU_ISA); ONNX Runtime has no such switch
and runs its widest kernels. The table's header names the CPU and the level.

For each cell (RNN, GRU), shape and pass ("fwd": forward; "train": forward + backward) it prints the
median time in ms of every contender (fastrnn = the fastest backend built, reference = the NumPy
backend, torch = torch.nn.RNN/GRU, onnxruntime = ONNX Runtime's GRU operator, GRU forward in float32
only, where onnx and onnxruntime are installed (pip install ".[bench]"), gemm = the GEMM-bound time),
the speedup over each peer (peer time / fastrnn time: above 1, fastrnn is faster) and fastrnn's time
as a multiple of the GEMM-bound time (fastrnn / gemm: 1 would be the bound itself). "—" marks a
contender that is not installed, has no such workload (ONNX Runtime: the RNN, training), failed (the
reason is printed under the table) or was skipped: the NumPy reference is skipped where one call
does more than --reference-max-gflop GFLOP of GEMM work. How the times are taken is described in
benches/orchestrate.py (and benches/timing.py, benches/contenders/). Under the table: the rounds whose
slowest took over 1.5x the fastest ("noisy"), and the thread scaling probed just before and after
every worker (benches/probe.py) with the workers around which it was slow: on a shared VM what a
second thread adds comes and goes, and one contender's rounds can all fall in a slow spell.

Memory (--memory, instead of the times):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benches.run --memory --shapes small,stream-256

For each cell and shape, the memory of one training step (forward + backward), in KiB per time step
(bytes / T), each measured in a fresh worker process (memory.memory_step, orchestrate.measure_memory):

    min          what the backward needs from the forward at the least. GRU: the states h_t (B·H
                 values per step) and the gates r, z, n and W_hn h_{t-1} + b_hn (reset_after;
                 r ⊙ h_{t-1} for reset_after=False) (4·B·H per step): 5·B·H values per step. RNN: the
                 states h_t only (B·H per step): tanh' = 1 − h², relu' = [h > 0] come from h itself.
                 The input projection x w_ih^T + b of all steps (G·B·H per step, 3·B·H for the GRU) is
                 scratch of the forward alone, and the pre-activation gradients (2·G·B·H per step)
                 scratch of the backward alone: neither needs to live from the forward to the backward.
                 The inputs x (B·I per step), which the weight gradient needs, are the caller's.
    cache        what fastrnn's forward cache actually keeps: the nbytes of its arrays that are not
                 the caller's (x, h0, weights), / T. The C backend keeps states (T+1, B, H) and, for
                 the GRU, gates (T, B, 4H): the minimum plus one state (h0).
    NumPy peak   fastrnn's peak of NumPy allocations during the step (tracemalloc sees NumPy's
                 allocations): cache + outputs + dx + weight gradients + the kernels' scratch.
    RSS peak     the peak resident-set increase during the step (VmHWM reset through
                 /proc/self/clear_refs, glibc told to mmap every block from 64 KiB so that freed
                 memory leaves the RSS), for fastrnn and for each peer (torch: nn.GRU/nn.RNN with
                 x and h0 requiring gradients, its autograd graph's saved tensors included).
    RSS kept     resident memory still held after the step, its results dropped (buffers that a
                 library keeps for its next call).
A warm-up step with T = 1 runs first in each worker (libraries loaded, thread pools started).
"""
import argparse
import datetime
import json
import os
import platform
import sys

import numpy as np

from .contenders import BOUND, CONTENDERS, REFERENCE_MAX_GFLOP, SUBJECT, too_slow
from .memory import min_bytes_per_step
from .orchestrate import measure, measure_memory
from .probe import PROBE_N, SLOW_SCALING, is_slow
from .tables import fixed, print_notes, shape_columns, table as render_table
from .workloads import (CELLS, DTYPES, PASSES, QUICK_SHAPES, SHAPES, STEP_PASSES, default_threads, parse_choices,
                        parse_shapes, workloads)

_BLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

# --simd: the environment that holds every worker to an instruction-set level (see the docstring)
SIMD_ENV = {
    "avx512": {"FASTRNN_SIMD": "avx512"},
    "avx2": {"FASTRNN_SIMD": "avx2", "OPENBLAS_CORETYPE": "Haswell", "ATEN_CPU_CAPABILITY": "avx2",
             "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "baseline": {"FASTRNN_SIMD": "baseline", "OPENBLAS_CORETYPE": "Nehalem", "ATEN_CPU_CAPABILITY": "default",
                 "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "ONEDNN_MAX_CPU_ISA": "SSE41"},
}


def _positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value

    return parse


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m benches.run", description=__doc__.split("\n\n")[0],
        epilog="Run as: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benches.run --quick "
               "(see benches/run.py and benches/orchestrate.py)")
    p.add_argument("--quick", action="store_true",
                   help=f"shapes {','.join(QUICK_SHAPES)} only, 2 rounds of 0.2 s (what the README runs)")
    p.add_argument("--shapes", help=f"comma-separated: {', '.join(SHAPES)}, all, or TxBxIxH "
                                    "(default: all)")
    p.add_argument("--cells", default="rnn,gru", help="comma-separated: rnn, gru (default: rnn,gru)")
    p.add_argument("--passes", default="fwd,train",
                   help="comma-separated: fwd, train, step, step-train (default: fwd,train); the step "
                        "passes time one call of the single-step cells (fastrnn.GRUCell vs torch.nn.GRUCell)")
    p.add_argument("--dtype", default="float32", choices=DTYPES)
    p.add_argument("--threads", type=_positive(int), default=default_threads(),
                   help="threads for every contender (default: the usable cores, %(default)s)")
    p.add_argument("--rounds", type=_positive(int), help="worker rounds per contender (default 3, --quick 2)")
    p.add_argument("--min-time", type=_positive(float),
                   help="seconds of calls per workload and round (default 0.3, --quick 0.2)")
    p.add_argument("--contenders", default=",".join(CONTENDERS),
                   help="comma-separated, from %(default)s")
    p.add_argument("--reference-max-gflop", type=float, default=REFERENCE_MAX_GFLOP,
                   help="skip the NumPy reference above this much GEMM work per call; 0: skip it "
                        "everywhere (default %(default)s)")
    p.add_argument("--simd", choices=list(SIMD_ENV), help="run fastrnn (and, as far as they allow, the peers) at "
                   "this instruction-set level (default: each library's widest)")
    p.add_argument("--json", metavar="PATH", help="also write the results and machine info as JSON")
    p.add_argument("--markdown", action="store_true", help="print GitHub markdown tables")
    p.add_argument("--memory", action="store_true",
                   help="report the memory of one training step (KiB per time step) instead of times")
    args = p.parse_args(argv)
    try:
        args.shapes = parse_shapes(args.shapes or ",".join(QUICK_SHAPES if args.quick
                                                                  else SHAPES))
        args.cells = parse_choices("cell", args.cells, CELLS)
        args.passes = parse_choices("pass", args.passes, PASSES + STEP_PASSES)
        args.contenders = parse_choices("contender", args.contenders, list(CONTENDERS))
    except ValueError as exc:
        p.error(str(exc))
    args.rounds = args.rounds or (2 if args.quick else 3)
    args.min_time = args.min_time or (0.2 if args.quick else 0.3)
    return args


def _ratio(num, den):
    return num / den if num is not None and den is not None and den > 0 else None


def collect_rows(results, ws, names):
    """One dict per workload: times in ms per contender, speedups over the peers, multiple of the bound."""
    peers = [n for n in names if n not in (SUBJECT, BOUND)]
    rows = []
    for w in ws:
        seconds = {n: results.time(n, w) for n in names}
        subject = seconds.get(SUBJECT)
        rows.append({
            "cell": w.cell, "shape": w.shape, **w.dims._asdict(), "pass": w.phase, "dtype": w.dtype,
            "gflop": round(w.gflop, 4),
            "ms": {n: None if s is None else s * 1e3 for n, s in seconds.items()},
            "rounds_ms": {n: [s * 1e3 for s in results.rounds.get(n, {}).get(w.key, [])] for n in names},
            "speedup": {p: _ratio(seconds[p], subject) for p in peers},
            "gemm_multiple": _ratio(subject, seconds.get(BOUND)),
        })
    return rows


def columns(names):
    """(header, row -> text) for each column of the table, for the contenders `names`."""
    S = SUBJECT
    cols = shape_columns() + [("pass", lambda r: r["pass"])]
    cols += [(f"{n} ms", lambda r, n=n: fixed(r["ms"][n])) for n in names]
    if S in names:
        cols += [(f"{p}/{S}", lambda r, p=p: fixed(r["speedup"][p], "×")) for p in names if p not in (S, BOUND)]
        if BOUND in names:
            cols.append((f"{S}/{BOUND}", lambda r: fixed(r["gemm_multiple"], "×")))
    return cols


def table(rows, names, markdown=False):
    """The rows of one cell as aligned text columns or as a GitHub markdown table."""
    return render_table(rows, columns(names), 3, markdown)


LEGEND = (f"peer/{SUBJECT}: peer time / {SUBJECT} time (above 1: {SUBJECT} is faster); "
          f"{SUBJECT}/{BOUND}: {SUBJECT}'s time as a multiple of the GEMM-bound time")


def machine_info(args, results, load):
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:
        pass
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    for info in results.info.values():
        versions.update({lib: info[lib] for lib in ("fastrnn", "torch", "onnxruntime") if lib in info})
    return {
        "cpu": cpu or platform.processor() or platform.machine(),
        "logical_cpus": os.cpu_count(), "usable_cpus": default_threads(), "threads": args.threads,
        "platform": platform.platform(), **versions,
        "fastrnn_backend": results.info.get(SUBJECT, {}).get("backend"),
        "load_average_before": round(load, 2),
        "blas_env": {var: os.environ.get(var) for var in _BLAS_OVERRIDES},
        "simd": results.info.get(SUBJECT, {}).get("simd"), "simd_env": SIMD_ENV.get(getattr(args, "simd", None)),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


NOISY_SPREAD = 1.5  # rounds whose slowest/fastest exceeds this are listed under the table


def notes(args, rows, results, skipped):
    out = [LEGEND] + info_notes(results.info)
    noisy = [f"{name} {r['cell']}:{r['shape']}:{r['pass']}" for r in rows for name, t in r["rounds_ms"].items()
             if len(t) > 1 and max(t) > NOISY_SPREAD * min(t)]
    if noisy:
        total = sum(len(t) > 1 for r in rows for t in r["rounds_ms"].values())
        listed = ": " + ", ".join(noisy) if len(noisy) <= 6 else ""
        out.append(f"noisy: in {len(noisy)} of {total} measurements the slowest round took over {NOISY_SPREAD}x "
                   f"the fastest (is the machine busy?){listed}")
    out += scaling_notes(results.scaling, args.threads)
    for name, keys in skipped.items():
        if keys:
            out.append(f"{name}: skipped above {args.reference_max_gflop:g} GFLOP per call "
                       f"(--reference-max-gflop): {', '.join(keys)}")
    return out + problem_notes(results.problems)


def scaling_notes(probes, threads):
    """One footnote on the thread-scaling probes taken around the workers (benches/probe.py), naming
    the rounds where the machine ran `threads` threads slowly; none if no probe ran."""
    values = [v for pairs in probes.values() for pair in pairs for v in pair if v is not None]
    if not values:
        return []
    workers = sum(len(pairs) for pairs in probes.values())
    slow = [f"{name} round {r + 1}" for name, pairs in probes.items() for r, pair in enumerate(pairs)
            if any(is_slow(v, threads) for v in pair)]
    text = (f"thread scaling (a {PROBE_N}^3 float32 GEMM at 1 and {threads} threads, just before and after "
            f"each worker): {min(values):.2f}-{max(values):.2f}x")
    if slow:
        text += (f"; under {SLOW_SCALING * threads:.2g}x around {len(slow)} of {workers} workers, whose "
                 f"times may be slower for the machine, not the library: {', '.join(slow)}")
    return [text]


def info_notes(info):
    """One footnote per contender: what its setup reported (versions, threads...)."""
    return [f"{name}: " + ", ".join(f"{k} {v}" for k, v in i.items()) for name, i in info.items()]


def problem_notes(problems):
    """One footnote per problem, {contender: {key or None: message}}."""
    return [f"{name}{'' if key is None else ' ' + key}: {message}"
            for name, per_key in problems.items() for key, message in per_key.items()]


def write_json(path, data):
    """Write data to path as JSON (through path.tmp, so that a failed run leaves no half file)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)
    print(f"wrote {path}", file=sys.stderr)


def memory_rows(results, ws, names):
    """One dict per workload: bytes per time step of the minimum, fastrnn's cache, and each contender's
    measured peaks (None where missing)."""
    rows = []
    for w in ws:
        T = w.dims.T
        per_step = lambda b: None if b is None else b / T
        rec = {n: results.memory.get(n, {}).get(w.key, {}) for n in names}
        subject = rec.get(SUBJECT, {})
        rows.append({
            "cell": w.cell, "shape": w.shape, **w.dims._asdict(), "dtype": w.dtype,
            "min": per_step(min_bytes_per_step(w) * T),
            "cache": per_step(subject.get("cache")),
            "traced_peak": per_step(subject.get("traced_peak")),
            "rss_peak": {n: per_step(rec[n].get("rss_peak")) for n in names},
            "rss_retained": {n: per_step(rec[n].get("rss_retained")) for n in names},
            "raw_bytes": rec,
        })
    return rows


def memory_columns(names):
    S = SUBJECT
    kib = lambda v: fixed(None if v is None else v / 1024)
    cols = shape_columns() + [("min", lambda r: kib(r["min"]))]
    if S in names:
        cols += [(f"{S} cache", lambda r: kib(r["cache"])),
                 (f"{S} NumPy peak", lambda r: kib(r["traced_peak"]))]
    for n in names:
        cols += [(f"{n} RSS peak", lambda r, n=n: kib(r["rss_peak"][n])),
                 (f"{n} RSS kept", lambda r, n=n: kib(r["rss_retained"][n]))]
    if S in names:
        cols += [(f"{p}/{S} peak", lambda r, p=p: fixed(_ratio(r["rss_peak"][p], r["rss_peak"][S]), "×"))
                 for p in names if p != S]
    return cols


def memory_table(rows, names, markdown=False):
    """The memory rows of one cell, as table() lays them out."""
    return render_table(rows, memory_columns(names), 2, markdown)


def main_memory(args):
    """--memory: one training step of every cell and shape, in fresh worker processes."""
    names = [n for n in args.contenders if getattr(CONTENDERS[n], "memory", True)]
    ws = workloads(args.cells, args.shapes, phases=("train",), dtype=args.dtype)
    jobs = {n: [w for w in ws if not too_slow(CONTENDERS[n], w, args.reference_max_gflop)]
            for n in names}
    progress = lambda msg: print(msg, file=sys.stderr, flush=True)
    results = measure_memory(jobs, threads=args.threads, progress=progress)
    rows = memory_rows(results, ws, names)
    print(f"\nfastrnn memory of one training step (forward + backward), KiB per time step: "
          f"{args.threads} thread{'s' * (args.threads > 1)}, {args.dtype}")
    for cell in args.cells:
        print(f"\n{'### ' if args.markdown else ''}{cell.upper()}\n")
        print(memory_table([r for r in rows if r["cell"] == cell], names, markdown=args.markdown))
    print()
    footnotes = ["min: what the backward needs (GRU 5·B·H values per step, RNN B·H); cache: what "
                 f"{SUBJECT}'s forward cache keeps; NumPy peak: tracemalloc; RSS peak / kept: "
                 "resident memory during / after the step (see benches/run.py)"]
    footnotes += info_notes(results.info) + problem_notes(results.problems)
    print_notes(footnotes, args.markdown)
    if args.json:
        write_json(args.json, {"settings": {"dtype": args.dtype, "threads": args.threads,
                                            "shapes": {k: list(v) for k, v in args.shapes.items()}},
                               "contenders": results.info, "memory": rows, "notes": footnotes})


def main(argv=None):
    args = parse_args(argv)
    if args.memory:
        return main_memory(args)
    set_vars = [var for var in _BLAS_OVERRIDES if var in os.environ]
    if args.simd:
        os.environ.update(SIMD_ENV[args.simd])        # the workers inherit it (orchestrate.worker_env)
    elif set_vars:
        print(f"warning: {', '.join(set_vars)} set: BLAS may not run its native kernel; run with "
              f"env {' '.join('-u ' + v for v in set_vars)} python -m benches.run ...", file=sys.stderr)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load > 0.5 * default_threads():
        print(f"warning: load average {load:.1f} on {default_threads()} usable CPUs: other processes "
              f"are running and the times will be noisy", file=sys.stderr)
    ws = workloads(args.cells, args.shapes, phases=args.passes, dtype=args.dtype)
    jobs, skipped = {}, {}
    for name in args.contenders:
        slow = [too_slow(CONTENDERS[name], w, args.reference_max_gflop) for w in ws]
        jobs[name] = [w for w, s in zip(ws, slow) if not s]
        skipped[name] = [w.key for w, s in zip(ws, slow) if s]
    progress = lambda msg: print(msg, file=sys.stderr, flush=True)
    results = measure(jobs, threads=args.threads, rounds=args.rounds, min_time=args.min_time,
                      progress=progress)

    rows = collect_rows(results, ws, args.contenders)
    machine = machine_info(args, results, load)
    simd = results.info.get(SUBJECT, {}).get("simd", "?")
    peers = "peers at their widest" if not args.simd or args.simd == "avx512" else f"peers held to {args.simd} (--simd)"
    print(f"\nfastrnn benchmarks: {machine['cpu']}, fastrnn SIMD level {simd}, {peers}, {args.threads} "
          f"thread{'s' * (args.threads > 1)}, {args.dtype}, median of {args.rounds} rounds, {machine['date']}")
    for cell in args.cells:
        cell_rows = [r for r in rows if r["cell"] == cell]
        print(f"\n{'### ' if args.markdown else ''}{cell.upper()}\n")
        print(table(cell_rows, args.contenders, markdown=args.markdown))
    print()
    footnotes = notes(args, rows, results, skipped)
    print_notes(footnotes, args.markdown)

    if args.json:
        data = {"machine": machine,
                "settings": {"dtype": args.dtype, "threads": args.threads, "rounds": args.rounds,
                             "min_time_s": args.min_time, "reference_max_gflop": args.reference_max_gflop,
                             "shapes": {k: list(v) for k, v in args.shapes.items()}},
                "contenders": results.info, "results": rows, "notes": footnotes,
                "scaling": {name: [list(pair) for pair in pairs] for name, pairs in results.scaling.items()}}
        write_json(args.json, data)


if __name__ == "__main__":
    main()
