"""Two builds of the kernels against each other, in one process, their calls alternating: the way to
decide a change of a few percent on a machine whose speed drifts by more than that within the hour.

    python -m benches.ab A.so B.so [--shape 50x64x512x512] [--cell gru|rnn] [--pass train|fwd|inf]
                                   [--rounds 20] [--simd LEVEL] [--simd-b LEVEL] [--threads 2]

A.so and B.so are copies of the compiled extension (fastrnn/_ckernels*.so) of the two versions, e.g.

    git stash && python setup.py build_ext --inplace && cp fastrnn/_ckernels*.so /tmp/A.so
    git stash pop && python setup.py build_ext --inplace && cp fastrnn/_ckernels*.so /tmp/B.so
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benches.ab /tmp/A.so /tmp/B.so --shape medium

Both are loaded with ctypes (each its own copy of the kernels' state, one OpenMP runtime), put on
the same SIMD level (fr_simd_select; default: the widest both run) and called through the kernels'
C entry points (csrc/fastrnn.h) on the same inputs, with their own 64-byte-aligned buffers reused
from round to round. Each round calls A then B, or B then A (alternating), "train": the forward
keeping its cache, then the backward (the reset-after GRU's and the RNN's one shared pre-activation
buffer); "fwd": the forward keeping its cache; "inf": the inference forward (no states, no gates).
After three rounds of warm-up it reports the median forward and backward time of each, B / A, the
median of the rounds' B / A, and whether the two gave bitwise the same outputs and gradients (a
change meant to keep the bits keeps them). `run` returns the same as a dict.

With `--simd-b LEVEL`, B runs on that level and A on `--simd`'s: two levels of one build against
each other (A.so and B.so two copies of the same file, as ctypes loads a path once). Their bits may
differ, as levels' do.
"""
import argparse
import ctypes
import sys
import time

import numpy as np

from .workloads import parse_shape

PASSES = ("train", "fwd", "inf")
WARMUP = 3


class Layer(ctypes.Structure):
    """fr_layer (csrc/fastrnn.h)."""
    _fields_ = [("T", ctypes.c_int64), ("B", ctypes.c_int64), ("I", ctypes.c_int64), ("H", ctypes.c_int64),
                ("lengths", ctypes.c_void_p), ("reverse", ctypes.c_int), ("variant", ctypes.c_int),
                ("nthreads", ctypes.c_int), ("overwrite", ctypes.c_int)]


FR_RNN_TANH, FR_GRU_RESET_AFTER = 0, 1      # csrc/fastrnn.h


def _aligned(shape):
    n = int(np.prod(shape))
    buf = np.zeros(n + 16, np.float32)
    off = (-buf.ctypes.data % 64) // 4
    return buf[off:off + n].reshape(shape)


class _Build:
    """One build's entry points and buffers."""

    def __init__(self, path, level, dims, cell):
        self.lib = ctypes.CDLL(path, mode=ctypes.RTLD_LOCAL)
        rc = self.lib.fr_simd_select(level.encode())
        if rc != 0:
            raise ValueError(f"{path}: cannot run the SIMD level {level!r} (fr_simd_select: {rc})")
        T, B, I, H = dims
        G = 3 if cell == "gru" else 1
        self.cell = cell
        self.buf = {"out": (T, B, H), "h_n": (B, H), "states": (T + 1, B, H), "xproj": (T, B, G * H),
                    "dx": (T, B, I), "dh0": (B, H), "dw_ih": (G * H, I), "dw_hh": (G * H, H),
                    "db_ih": (G * H,), "db_hh": (G * H,), "dg": (T, B, (4 if cell == "gru" else 1) * H)}
        if cell == "gru":
            self.buf["gates"] = (T, B, 4 * H)
        self.buf = {k: _aligned(s) for k, s in self.buf.items()}

    def forward(self, inputs, layer, keep):
        b, p = self.buf, _ptr
        states = p(b["states"]) if keep else None
        if self.cell == "gru":
            return self.lib.fr_gru_forward_f32(p(b["out"]), p(b["h_n"]), states, p(b["gates"]) if keep else None,
                                               p(b["xproj"]), *map(p, inputs[:6]), ctypes.byref(layer), None)
        return self.lib.fr_rnn_forward_f32(p(b["out"]), p(b["h_n"]), states, p(b["xproj"]), *map(p, inputs[:6]),
                                           ctypes.byref(layer), None)

    def backward(self, inputs, layer):
        b, p = self.buf, _ptr
        for k in ("dw_ih", "dw_hh", "db_ih", "db_hh"):
            b[k][...] = 0
        x, _, w_ih, w_hh, _, _, d_out, d_hn = inputs
        grads = [p(b[k]) for k in ("dx", "dh0", "dw_ih", "dw_hh", "db_ih", "db_hh")] + [p(b["dg"]), p(b["dg"])]
        if self.cell == "gru":
            return self.lib.fr_gru_backward_f32(*grads, p(d_out), p(d_hn), p(x), p(b["states"]), p(b["gates"]),
                                                p(w_ih), p(w_hh), ctypes.byref(layer), None)
        return self.lib.fr_rnn_backward_f32(*grads, p(d_out), p(d_hn), p(x), p(b["states"]), p(w_ih), p(w_hh),
                                            ctypes.byref(layer), None)

    def results(self, pass_):
        names = ("out", "h_n") + (("dx", "dh0", "dw_ih", "dw_hh", "db_ih", "db_hh") if pass_ == "train" else ())
        return {k: self.buf[k] for k in names}


def _ptr(a):
    return ctypes.c_void_p(a.ctypes.data)


def make_inputs(dims, cell, seed=0):
    """x, h0, w_ih, w_hh, b_ih, b_hh, d_out, d_hn: float32, aligned, scaled as an initialised layer."""
    T, B, I, H = dims
    G = 3 if cell == "gru" else 1
    rng = np.random.default_rng(seed)
    shapes = [((T, B, I), 1.0), ((B, H), 0.5), ((G * H, I), H ** -0.5), ((G * H, H), H ** -0.5), ((G * H,), 0.1),
              ((G * H,), 0.1), ((T, B, H), 1.0), ((B, H), 1.0)]
    out = []
    for shape, scale in shapes:
        a = _aligned(shape)
        a[...] = rng.standard_normal(shape).astype(np.float32) * scale
        out.append(a)
    return out


def widest_common_level(paths):
    """The widest SIMD level every build runs on this CPU."""
    for level in ("avx512", "avx2", "baseline", "native"):
        if all(ctypes.CDLL(p, mode=ctypes.RTLD_LOCAL).fr_simd_select(level.encode()) == 0 for p in paths):
            return level
    raise ValueError("the builds share no SIMD level this CPU runs")


def run(path_a, path_b, dims, cell="gru", pass_="train", rounds=20, level=None, threads=2, level_b=None):
    """{"ms": {"A": (fwd, bwd), "B": (fwd, bwd)}, "ratio": B/A of the medians' sums, "round_ratio": the
    median of the rounds' B/A, "bitwise_same": bool, "level": A's, "level_b": B's (default A's)}."""
    if pass_ not in PASSES:
        raise ValueError(f"pass: expected one of {', '.join(PASSES)}, got {pass_!r}")
    level = level or widest_common_level([path_a, path_b])
    level_b = level_b or level
    builds = [_Build(path_a, level, dims, cell), _Build(path_b, level_b, dims, cell)]
    inputs = make_inputs(dims, cell)
    T, B, I, H = dims
    layer = Layer(T, B, I, H, None, 0, FR_GRU_RESET_AFTER if cell == "gru" else FR_RNN_TANH, threads)
    times = np.zeros((rounds, 2, 2))
    for r in range(WARMUP + rounds):
        for i in ((0, 1) if r % 2 == 0 else (1, 0)):
            t0 = time.perf_counter()
            if builds[i].forward(inputs, layer, keep=pass_ != "inf"):
                raise MemoryError("forward: out of memory")
            t1 = time.perf_counter()
            if pass_ == "train" and builds[i].backward(inputs, layer):
                raise MemoryError("backward: out of memory")
            t2 = time.perf_counter()
            if r >= WARMUP:
                times[r - WARMUP, i] = (t1 - t0, t2 - t1)
    a, b = (builds[i].results(pass_) for i in (0, 1))
    med = np.median(times, axis=0) * 1e3
    return {"ms": {"A": tuple(med[0]), "B": tuple(med[1])}, "ratio": float(med[1].sum() / med[0].sum()),
            "round_ratio": float(np.median(times[:, 1].sum(1) / times[:, 0].sum(1))),
            "bitwise_same": all(np.array_equal(a[k], b[k]) for k in a), "level": level, "level_b": level_b,
            "results": (a, b)}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benches.ab", description=__doc__.split("\n\n")[0])
    ap.add_argument("a", help="build A: a copy of fastrnn/_ckernels*.so")
    ap.add_argument("b", help="build B")
    ap.add_argument("--shape", default="gnmt", help="a standard shape name or TxBxIxH (default gnmt)")
    ap.add_argument("--cell", choices=("gru", "rnn"), default="gru")
    ap.add_argument("--pass", dest="pass_", choices=PASSES, default="train")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--simd", default=None, help="the SIMD level of both (default: the widest both run)")
    ap.add_argument("--simd-b", default=None, help="B's SIMD level, if not A's (two levels compared)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.threads < 1:
        ap.error("--rounds and --threads must be positive")
    dims = parse_shape(args.shape)
    res = run(args.a, args.b, dims, args.cell, args.pass_, args.rounds, args.simd, args.threads, args.simd_b)
    (fa, ba), (fb, bb) = res["ms"]["A"], res["ms"]["B"]
    levels = res['level'] if res['level_b'] == res['level'] else f"A {res['level']}, B {res['level_b']}"
    line = f"{args.cell} {args.shape} {args.pass_}, level {levels}, {args.threads} threads, {args.rounds} rounds:"
    line += f" forward A {fa:.3f} B {fb:.3f} ms ({fb / fa:.3f})"
    if args.pass_ == "train":
        line += f", backward A {ba:.3f} B {bb:.3f} ms ({bb / ba:.3f})"
    line += f"; B/A {res['ratio']:.3f} (rounds' median {res['round_ratio']:.3f}); bitwise the same: {res['bitwise_same']}"
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
