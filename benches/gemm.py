"""The machine's arithmetic ceiling, and fastrnn's own GEMM against it and against OpenBLAS.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benches.gemm [--threads 1,2]
        [--shapes gnmt,large] [--cells gru] [--rounds 3] [--reps 10] [--simd LEVEL] [--json PATH]

Compiles benches/gemm.c with csrc/gemm.c, inplace.c and runtime.c for one instruction-set level (--simd:
baseline, avx2, avx512 or native, with the flags setup.py gives that level; default: the level the
installed extension runs, i.e. FASTRNN_SIMD or the widest the CPU has), then, at each thread count:
  peak    the float32 FMA throughput of register-only loops (no memory traffic): what no GEMM can beat
  gemm    the three big products of a training step at each shape, as the kernels run them
          (par_gemm in the layouts the kernels give it: input projection T*B x G*H x I, B transposed
          (w_ih^T); weight gradient G*H x H x T*B, A transposed; dx T*B x I x G*H), best of --reps calls, and NumPy's matmul (OpenBLAS) on the same shapes
          in a worker process of its own with the same thread count.
  step    at shapes with a batch of one (stream-256, stream-512: B = 1, where a step's product reads
          every recurrent weight for two flops each), the time loop's step as the kernels run it (the
          thread's packed slice of w_hh times the state, its units of the next state written, the
          barrier) against the same loop reading those packed weights once with no arithmetic (one
          stream, the direction alternating as the product's does): how close the step comes to the
          cache's bandwidth. Its floor for the whole B = 1 forward: the input projection at the FMA
          peak plus T plain reads.
Rounds alternate the two; the table gives each one's best round in GFLOPS and as a share of the peak.
A result is checked against a plain sum before its time is reported. To compare the AVX2 path with
OpenBLAS's AVX2 kernel on an AVX-512 machine: --simd avx2 --blas-coretype Haswell (OPENBLAS_CORETYPE
set in the OpenBLAS worker only).
"""
import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time

from . import workloads

HERE = os.path.dirname(os.path.abspath(__file__))
FLAGS = ["-O3", "-std=gnu11", "-fno-wrapv"]


ROOT = os.path.dirname(HERE)


def level_flags(level):
    """The compiler flags setup.py gives the kernels of `level` (its table, read from setup.py)."""
    if level == "native":
        return ["-march=native"]
    spec = importlib.util.spec_from_file_location("fastrnn_setup", os.path.join(ROOT, "setup.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)                 # defines the table; setup() runs only as __main__
    table = dict(mod._X86_LEVELS)
    if level not in table:
        raise SystemExit(f"--simd: expected one of {', '.join([*table, 'native'])}, got {level!r}")
    return table[level]


def default_level():
    """The level the installed extension runs (FASTRNN_SIMD, else the widest this CPU has)."""
    from fastrnn import _ckernels

    return _ckernels.simd_levels()[0]


def build(outdir, level):
    """Compile gemm.c into outdir for `level`, as setup.py compiles the kernels; returns the program's
    path. A failed compile raises CalledProcessError (with the compiler's message on stderr)."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        cc = "cc"
    exe = os.path.join(outdir, "gemm")
    csrc = os.path.join(ROOT, "csrc")
    cmd = [cc, *FLAGS, *level_flags(level), f"-DFR_LEVEL={level}", "-DFR_DOUBLE=0", "-fopenmp", "-I", csrc,
           os.path.join(HERE, "gemm.c"), os.path.join(csrc, "gemm.c"), os.path.join(csrc, "inplace.c"),
           os.path.join(csrc, "runtime.c"),
           "-o", exe, "-lm"]
    subprocess.run(cmd, check=True)
    return exe


def products(cell, dims):
    """(name, M, N, K, A transposed, B transposed) of the big products of one training step."""
    T, B, I, H = dims
    GH = workloads.GATES[cell] * H
    return [("input projection", T * B, GH, I, 0, 1), ("weight gradient", GH, H, T * B, 1, 0),
            ("dx", T * B, I, GH, 0, 0)]


def steps(cell, dims):
    """(T, H, G, I) of the B = 1 time loop at these dims, or None where the batch is not one."""
    T, B, I, H = dims
    return (T, H, workloads.GATES[cell], I) if B == 1 else None


def run_c(exe, *args):
    res = subprocess.run([exe, *map(str, args)], check=True, capture_output=True, text=True)
    return json.loads(res.stdout)


def numpy_worker(threads, specs, reps):
    """Best seconds of NumPy's matmul for each (M, N, K, ta, tb), in this process (started by `measure`
    with the thread count in its environment). Returns a list in the order given."""
    import numpy as np

    rng = np.random.default_rng(0)
    out = []
    for M, N, K, ta, tb in specs:
        a = rng.standard_normal((K, M), dtype=np.float32).T if ta else rng.standard_normal((M, K), dtype=np.float32)
        b = rng.standard_normal((N, K), dtype=np.float32).T if tb else rng.standard_normal((K, N), dtype=np.float32)
        c = np.empty((M, N), np.float32)
        np.matmul(a, b, out=c)
        best = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            np.matmul(a, b, out=c)
            best = min(best, time.perf_counter() - t0)
        assert abs(c[M // 2, N // 3] - float(a[M // 2].astype(np.float64) @ b[:, N // 3])) < 1e-3 * (1 + K / 100)
        out.append(best)
    return out


def measure_numpy(threads, specs, reps, coretype=None):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    if coretype:
        env["OPENBLAS_CORETYPE"] = coretype
    payload = json.dumps({"threads": threads, "specs": specs, "reps": reps})
    res = subprocess.run([sys.executable, "-m", "benches.gemm", "--worker", payload], check=True, env=env,
                         capture_output=True, text=True, cwd=os.path.dirname(HERE))
    return json.loads(res.stdout)


def _ints(text):
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got {text!r}")
    return values


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benches.gemm", description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=_ints, default=None, help="thread counts (default: 1 and all usable cores)")
    ap.add_argument("--shapes", default="gnmt,large", type=workloads.parse_shapes)
    ap.add_argument("--cells", default="gru", type=lambda t: workloads.parse_choices("cell", t, workloads.CELLS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--simd", default=None, help="instruction-set level of fastrnn's GEMM (default: the installed "
                    "extension's)")
    ap.add_argument("--blas-coretype", default=None, help="OPENBLAS_CORETYPE for the OpenBLAS worker (e.g. Haswell)")
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        job = json.loads(args.worker)
        print(json.dumps(numpy_worker(job["threads"], [tuple(s) for s in job["specs"]], job["reps"])))
        return
    usable = workloads.default_threads()
    counts = [n for n in (args.threads or sorted({1, usable})) if n <= usable]
    if not counts:
        raise SystemExit(f"none of the thread counts fits the {usable} usable cores")
    rows = [(cell, shape, name, *sizes) for cell in args.cells for shape, dims in args.shapes.items()
            for name, *sizes in products(cell, dims)]
    specs = [r[3:] for r in rows]
    loops = [(cell, shape, loop) for cell in args.cells for shape, dims in args.shapes.items()
             if (loop := steps(cell, dims))]
    level = args.simd or default_level()
    report = {"simd": level, "blas_coretype": args.blas_coretype, "peak": {}, "gemm": [], "step": []}
    with tempfile.TemporaryDirectory() as tmp:
        exe = build(tmp, level)
        for n in counts:
            peaks = [run_c(exe, "peak", n) for _ in range(args.rounds)]
            widths = {w: [p.get(f"{w}_gflops") for p in peaks] for w in ("sse", "avx2", "avx512")}
            report["peak"][n] = {w: None if None in v else max(v) for w, v in widths.items()}
            ours = [float("inf")] * len(rows)
            blas = [float("inf")] * len(rows)
            for r in range(args.rounds):
                print(f"[{n} threads] round {r + 1} of {args.rounds}", file=sys.stderr)
                for i, spec in enumerate(specs):
                    ours[i] = min(ours[i], run_c(exe, "par", n, *spec, args.reps)["seconds"])
                blas = [min(a, b) for a, b in zip(blas, measure_numpy(n, specs, args.reps, args.blas_coretype))]
            top = max(v for v in report["peak"][n].values() if v)
            for cell, shape, (T, H, G, I) in loops:
                best = {"step_seconds": float("inf"), "read_seconds": float("inf")}
                for _ in range(args.rounds):
                    res = run_c(exe, "step", n, H, G, T, args.reps)
                    best = {k: min(v, res[k]) for k, v in best.items()}
                report["step"].append({"threads": n, "cell": cell, "shape": shape, "T": T, "I": I, "H": H, "G": G,
                                       "bytes_per_thread": res["bytes_per_thread"], **best,
                                       "floor_seconds": 2.0 * T * I * G * H / (top * 1e9) + T * best["read_seconds"]})
            for row, (M, N, K, ta, tb), t_ours, t_blas in zip(rows, specs, ours, blas):
                flops = 2.0 * M * N * K
                report["gemm"].append({"threads": n, "cell": row[0], "shape": row[1], "product": row[2], "M": M,
                                       "N": N, "K": K, "transposed_a": bool(ta),
                                       "transposed_b": bool(tb), "fastrnn_gflops": flops / t_ours / 1e9,
                                       "openblas_gflops": flops / t_blas / 1e9, "peak_gflops": top})
    print_report(report)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


def print_report(report):
    print(f"fastrnn's GEMM at level {report['simd']}; OpenBLAS with OPENBLAS_CORETYPE="
          f"{report.get('blas_coretype') or '(its own choice)'}")
    print()
    print("| threads | FMA peak, 128-bit (GFLOPS) | 256-bit | 512-bit |")
    print("|---|---|---|---|")
    for n, p in report["peak"].items():
        cell = lambda v: "—" if v is None else f"{v:.0f}"
        print(f"| {n} | {cell(p.get('sse'))} | {cell(p.get('avx2'))} | {cell(p.get('avx512'))} |")
    print()
    print("| threads | cell | shape | product | M × N × K | fastrnn GFLOPS (% of peak) | OpenBLAS GFLOPS (% of peak) |")
    print("|---|---|---|---|---|---|---|")
    for g in report["gemm"]:
        ours, blas, peak = g["fastrnn_gflops"], g["openblas_gflops"], g["peak_gflops"]
        print(f"| {g['threads']} | {g['cell']} | {g['shape']} | {g['product']} | {g['M']} × {g['N']} × {g['K']} "
              f"| {ours:.0f} ({100 * ours / peak:.0f}%) | {blas:.0f} ({100 * blas / peak:.0f}%) |")
    if report.get("step"):
        print()
        print("| threads | cell | shape | w_hh a thread (KiB) | step µs | plain read µs | step / read "
              "| B = 1 forward floor ms |")
        print("|---|---|---|---|---|---|---|---|")
        for r in report["step"]:
            print(f"| {r['threads']} | {r['cell']} | {r['shape']} | {r['bytes_per_thread'] / 1024:.0f} "
                  f"| {1e6 * r['step_seconds']:.2f} | {1e6 * r['read_seconds']:.2f} "
                  f"| {r['step_seconds'] / r['read_seconds']:.2f} | {1e3 * r['floor_seconds']:.2f} |")


if __name__ == "__main__":
    main()
