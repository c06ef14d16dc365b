"""The benchmark harness shared by `benches.run` and `benches.test_bench` (SPEC §4).

    SHAPES       the standard shapes, name -> Dims(T, B, I, H); `parse_shapes` also takes "all", the
                 unlisted "tiny" (smoke runs) and literal shapes written TxBxIxH, e.g. "50x32x128x128".
    Workload     one thing to time: a cell ("rnn", "gru"), a shape, a dtype and a pass ("fwd", "train").
    CONTENDERS   name -> Contender, each building the callable to time for a workload, once:
                   fastrnn    fastrnn.functional with backend=None (the fastest backend built)
                   reference  the same with backend="numpy"
                   torch      torch.nn.RNN / torch.nn.GRU with the same weights
                   fastrnn.torch  fastrnn.torch.RNN / GRU and the cells, set up as torch is
                              (benches/contender_torch_modules.py)
                   onnxruntime  ONNX Runtime's GRU operator (linear_before_reset=1), GRU forward in
                              float32 only; registered where onnx and onnxruntime are installed
                              (pip install ".[bench]")
                   gemm       the GEMM-bound time: the same BLAS (NumPy's matmul) doing exactly the GEMM
                              shapes of SPEC §4 and nothing else
    measure()    the timing protocol: each contender runs in its own worker process, so that the thread
                 pools of different libraries never share a process; the rounds alternate the
                 contenders; a worker times every workload with `time_call` (warm-up calls, at least 2
                 and 0.2 s, then repeats until `min_time` and 3 runs, the median) and the result is the median of
                 the rounds. Every worker gets the same thread count (OMP_NUM_THREADS,
                 OPENBLAS_NUM_THREADS, MKL_NUM_THREADS, FASTRNN_NUM_THREADS and each library's own
                 setter). A contender that is not installed, or fails, comes back as None: a gap in
                 the table, never a crash.

    measure_memory()  the memory of one training step (run.py --memory): one fresh worker process per
                 contender and workload, memory_step() in it (peak RSS above the RSS before the step,
                 tracemalloc's peak of NumPy's allocations, and the bytes of fastrnn's forward cache)

"fwd" is one inference forward call (under `fastrnn.no_grad()` / `torch.no_grad()`: nothing kept for
a backward; ONNX Runtime is inference only); "train" is forward + backward with a fixed random d_out (torch:
`(out * d_out).sum().backward()`, with x and h0 requiring gradients as fastrnn returns dx and dh0).
"step" and "step-train" are one call of the single-step layers (fastrnn.GRUCell / RNNCell against
torch.nn.GRUCell / RNNCell) on the shape's first step, B, I, H (T ignored), inference and call +
backward; "gemm" is then the products of that one step.

A worker can be run by hand; it prints one JSON object per line, {"info": ...} first:

    python -m benches.harness --worker torch --threads 2 --workload gru:small:fwd --workload rnn:tiny:train
    python -m benches.harness --worker fastrnn --memory --workload gru:small:train
"""
import argparse
import gc
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from collections import namedtuple
from dataclasses import dataclass, field

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

Dims = namedtuple("Dims", "T B I H")

# SPEC §4: every benchmark and every claim uses these.
SHAPES = {
    "small": Dims(50, 32, 128, 128),
    "medium": Dims(100, 64, 256, 256),
    "gnmt": Dims(50, 64, 512, 512),  # oneDNN benchdnn GNMT encoder
    "mxnet": Dims(300, 20, 800, 800),  # MXNet fused GRU report
    "large": Dims(25, 64, 1024, 1024),
    "stream-256": Dims(1000, 1, 256, 256),  # streaming inference, B = 1
    "stream-512": Dims(1000, 1, 512, 512),  # DeepBench inference, B = 1
}
QUICK_SHAPES = ("small", "medium")
_UNLISTED_SHAPES = {"tiny": Dims(10, 4, 16, 16)}  # for smoke runs of the harness itself

CELLS = ("rnn", "gru")
GATES = {"rnn": 1, "gru": 3}
PASSES = ("fwd", "train")
# One step through the single-step layers (fastrnn.RNNCell / GRUCell, torch.nn.RNNCell / GRUCell) at the
# shape's B, I, H (T is ignored; x is the shape's first step): "step" an inference call, "step-train"
# a call and its backward. What they measure is mostly the per-call overhead of each library.
STEP_PASSES = ("step", "step-train")
DTYPES = ("float32", "float64")

# The NumPy reference is slow; above this much GEMM work per call it is skipped (run.py can change it).
REFERENCE_MAX_GFLOP = 20.0
WORKER_TIMEOUT_S = 1800


def parse_shape(spec):
    """Dims of a shape name, of "tiny", or of a literal "TxBxIxH"; ValueError otherwise."""
    spec = spec.strip()
    if spec in SHAPES:
        return SHAPES[spec]
    if spec in _UNLISTED_SHAPES:
        return _UNLISTED_SHAPES[spec]
    parts = spec.lower().split("x")
    if len(parts) == 4 and all(p.isdigit() for p in parts):
        dims = Dims(*map(int, parts))
        if min(dims) >= 1:
            return dims
    raise ValueError(f"unknown shape {spec!r}: expected one of {', '.join(SHAPES)}, 'all', "
                     f"or T x B x I x H written like 50x32x128x128")


def parse_shapes(text):
    """A comma-separated list of shapes ("all" = every standard shape) -> {name: Dims}, in order."""
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise ValueError("no shape given")
    out = {}
    for name in names:
        if name == "all":
            out.update(SHAPES)
        else:
            out[name] = parse_shape(name)
    return out


def parse_choices(what, text, allowed):
    """A comma-separated list of names from `allowed`, in the order given; ValueError naming the bad one."""
    names = [s.strip() for s in text.split(",") if s.strip()]
    for name in names:
        if name not in allowed:
            raise ValueError(f"unknown {what} {name!r}: expected one of {', '.join(allowed)}")
    if not names:
        raise ValueError(f"no {what} given")
    return list(dict.fromkeys(names))


def default_threads():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Workload:
    cell: str  # "rnn" or "gru"
    shape: str  # a name from SHAPES, "tiny" or a literal TxBxIxH
    phase: str  # "fwd" or "train"
    dtype: str = "float32"

    @property
    def dims(self):
        return parse_shape(self.shape)

    @property
    def key(self):
        """What a worker is told on its command line and answers with: cell:shape:phase."""
        return f"{self.cell}:{self.shape}:{self.phase}"

    @classmethod
    def from_key(cls, key, dtype="float32"):
        try:
            cell, shape, phase = key.split(":")
        except ValueError:
            raise ValueError(f"workload {key!r}: expected cell:shape:pass, e.g. gru:small:fwd") from None
        parse_choices("cell", cell, CELLS)
        parse_choices("pass", phase, PASSES + STEP_PASSES)
        parse_shape(shape)
        return cls(cell, shape, phase, dtype)

    @property
    def gflop(self):
        """GEMM work of one call (SPEC §4): forward 2·G·T·B·H·(I+H) FLOPs, a training step three times it."""
        T, B, I, H = self.dims
        if self.is_step:
            T = 1
        fwd = 2 * GATES[self.cell] * T * B * H * (I + H)
        return fwd * (3 if self.is_training else 1) / 1e9

    @property
    def is_step(self):
        """One step through the cell API (STEP_PASSES) rather than a whole sequence."""
        return self.phase in STEP_PASSES

    @property
    def is_training(self):
        """Forward and backward ("train", "step-train")."""
        return self.phase in ("train", "step-train")


def workloads(cells, shapes, phases=PASSES, dtype="float32"):
    return [Workload(c, s, p, dtype) for c in cells for s in shapes for p in phases]


Inputs = namedtuple("Inputs", "x h0 w_ih w_hh b_ih b_hh d_out")


def make_inputs(w, seed=0):
    """The one set of arrays every contender gets for `w`: PyTorch's default init for the weights."""
    T, B, I, H = w.dims
    G = GATES[w.cell]
    rng = np.random.default_rng(seed)
    k = 1.0 / np.sqrt(H)

    def uniform(shape, bound):
        return rng.uniform(-bound, bound, shape).astype(w.dtype)

    return Inputs(
        x=uniform((T, B, I), 1.0),
        h0=np.zeros((B, H), w.dtype),
        w_ih=uniform((G * H, I), k),
        w_hh=uniform((G * H, H), k),
        b_ih=uniform((G * H,), k),
        b_hh=uniform((G * H,), k),
        d_out=rng.standard_normal((T, B, H)).astype(w.dtype),
    )


# ---------------------------------------------------------------------------------------------------
# Contenders. A contender is an object with
#   setup(threads) -> dict   once per process: import the library (ImportError = not installed), set its
#                            thread count and denormal flushing; returns what to report (versions...)
#   build(w, inputs) -> fn   the zero-argument callable to time; raise Unsupported for workloads the
#                            library does not have (e.g. ONNX Runtime has no training)
#   slow                     True: skipped above REFERENCE_MAX_GFLOP (see too_slow)


class Unsupported(Exception):
    """The contender has no such workload: shown as a gap, without an error message."""


def _limit_blas_threads(threads):
    """Cap NumPy's BLAS pool (the environment variables already do; this also covers a BLAS that has
    been loaded before they were read). Returns a description of the BLAS, or None."""
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        return None
    threadpool_limits(limits=threads, user_api="blas")
    blas = [f"{d['internal_api']} {d['version']}" for d in threadpool_info() if d["user_api"] == "blas"]
    return ", ".join(blas) or None


from .contender_torch import Torch  # noqa: E402  (below Unsupported: the contenders need none of it)
from .contender_torch_modules import TorchModules  # noqa: E402


class FastRNN:
    """fastrnn.functional with one backend (None: the fastest one built)."""

    memory = True

    def __init__(self, backend=None, slow=False):
        self.backend, self.slow = backend, slow

    def setup(self, threads):
        import fastrnn

        available = fastrnn.backends()
        if self.backend is not None and self.backend not in available:
            raise ImportError(f"fastrnn backend {self.backend!r} not built (have {available})")
        fastrnn.set_num_threads(threads)
        info = {"fastrnn": fastrnn.__version__, "backend": self.backend or available[0],
                "threads": fastrnn.get_num_threads()}
        if "c" in available:
            from fastrnn import _ckernels

            info["simd"] = _ckernels.simd_levels()[0]
        return info

    def build(self, w, inputs):
        import fastrnn
        from fastrnn import functional as F

        if w.is_step:
            return self.build_step(w, inputs)
        forward, backward = {"rnn": (F.rnn_forward, F.rnn_backward),
                             "gru": (F.gru_forward, F.gru_backward)}[w.cell]
        args = inputs[:6]
        if w.phase == "fwd":
            def infer():
                with fastrnn.no_grad():
                    forward(*args, backend=self.backend)

            return infer

        def train():
            _, _, cache = forward(*args, backend=self.backend)
            backward(inputs.d_out, None, cache)

        return train

    def build_step(self, w, inputs):
        import fastrnn

        cls = {"rnn": fastrnn.RNNCell, "gru": fastrnn.GRUCell}[w.cell]
        T, B, I, H = w.dims
        cell = cls(I, H, dtype=np.dtype(w.dtype), backend=self.backend)
        cell.load_state_dict(dict(zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), inputs[2:6])))
        x, h, d = inputs.x[0], inputs.h0, inputs.d_out[0]
        if not w.is_training:
            def step():
                with fastrnn.no_grad():
                    cell(x, h)

            return step

        def step_train():
            cell(x, h)
            cell.backward(d)

        return step_train

    def cache_bytes(self, w, inputs):
        """Bytes the forward's cache keeps for the backward, beyond the caller's own arrays."""
        from fastrnn import functional as F

        forward = {"rnn": F.rnn_forward, "gru": F.gru_forward}[w.cell]
        _, _, cache = forward(*inputs[:6], backend=self.backend)
        return cache_nbytes(cache.data, inputs)


class Gemm:
    """The GEMM-bound time of SPEC §4: NumPy's BLAS doing the GEMMs of the workload and nothing else.

    forward:   one (T*B, I) @ (I, G*H) for the input projection, T x (B, H) @ (H, G*H) for the steps;
    training adds T x (B, G*H) @ (G*H, H) (dh), (T*B, G*H) @ (G*H, I) (dx),
               (G*H, T*B) @ (T*B, I) (dW_ih) and (G*H, T*B) @ (T*B, H) (dW_hh).
    Each product is one np.matmul into a preallocated output, so at B = 1 (T small products) the
    ~1 µs of a NumPy call is counted too: a slightly generous bound there."""

    slow = False
    memory = False  # a time bound, not a library

    def setup(self, threads):
        blas = _limit_blas_threads(threads)
        if blas is None:
            try:
                cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
                blas = f"{cfg['name']} {cfg['version']}"
            except Exception:
                blas = "unknown"
        return {"numpy": np.__version__, "blas": blas, "threads": threads}

    def build(self, w, inputs):
        T, B, I, H = w.dims
        if w.is_step:    # one step: the products of a sequence of one
            T = 1
        GH = GATES[w.cell] * H
        rng = np.random.default_rng(1)

        def operand(*shape):  # random, not zeros: the same values a kernel would see, no denormals
            return rng.uniform(-1, 1, shape).astype(w.dtype)

        x = inputs.x[:T].reshape(T * B, I)
        h = operand(B, H)
        products = [(x, inputs.w_ih.T, np.empty((T * B, GH), w.dtype))]
        products += [(h, inputs.w_hh.T, np.empty((B, GH), w.dtype))] * T
        if w.is_training:
            d_gates = operand(T * B, GH)  # the gate gradients of all steps
            hs = operand(T * B, H)  # the states of all steps
            products += [(d_gates[:B], inputs.w_hh, np.empty((B, H), w.dtype))] * T
            products += [
                (d_gates, inputs.w_ih, np.empty((T * B, I), w.dtype)),
                (d_gates.T, x, np.empty((GH, I), w.dtype)),
                (d_gates.T, hs, np.empty((GH, H), w.dtype)),
            ]

        def gemms():
            for a, b, c in products:
                np.matmul(a, b, out=c)

        return gemms


class OnnxRuntime:
    """ONNX Runtime's `GRU` operator (CPU), SPEC §4's fastest known CPU RNN inference engine: the GRU
    forward only (the RNN and training raise Unsupported).

    The graph is built in memory with onnx.helper: one GRU node with linear_before_reset=1 (PyTorch's
    reset_after GRU), X (T, B, I) and initial_h (1, B, H) as graph inputs, the weights as initializers
    in ONNX's layout: W (1, 3H, I), R (1, 3H, H), B (1, 6H) = [Wb, Rb], gate rows in ONNX's order
    z, r, h (PyTorch's are r, z, n). Outputs Y (T, 1, B, H) and Y_h (1, B, H). The session runs with
    intra_op_num_threads = the thread count, inter_op_num_threads = 1, sequential execution, every
    graph optimization, denormals as zero."""

    slow = False
    memory = False  # no training step

    def setup(self, threads):
        import onnx
        import onnxruntime

        self.threads = threads
        return {"onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__, "threads": threads}

    @staticmethod
    def model(w_ih, w_hh, b_ih, b_hh, opset=14):
        """The ONNX model (onnx.ModelProto) of one GRU layer with PyTorch's weights (rows r, z, n)."""
        import onnx
        from onnx import TensorProto, helper, numpy_helper

        H = w_hh.shape[1]
        I = w_ih.shape[1]
        order = np.r_[H:2 * H, 0:H, 2 * H:3 * H]  # PyTorch r, z, n -> ONNX z, r, h
        elem = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE}[w_ih.dtype]
        inits = [
            numpy_helper.from_array(np.ascontiguousarray(w_ih[order][None]), "W"),
            numpy_helper.from_array(np.ascontiguousarray(w_hh[order][None]), "R"),
            numpy_helper.from_array(np.concatenate([b_ih[order], b_hh[order]])[None], "B"),
        ]
        node = helper.make_node("GRU", ["X", "W", "R", "B", "", "initial_h"], ["Y", "Y_h"],
                                hidden_size=H, linear_before_reset=1)
        graph = helper.make_graph(
            [node], "fastrnn_gru_forward",
            [helper.make_tensor_value_info("X", elem, ["T", "B", I]),
             helper.make_tensor_value_info("initial_h", elem, [1, "B", H])],
            [helper.make_tensor_value_info("Y", elem, ["T", 1, "B", H]),
             helper.make_tensor_value_info("Y_h", elem, [1, "B", H])],
            initializer=inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        onnx.checker.check_model(model)
        return model

    def session(self, model):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = getattr(self, "threads", 1)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.add_session_config_entry("session.set_denormal_as_zero", "1")
        return ort.InferenceSession(model.SerializeToString(), sess_options=opts,
                                    providers=["CPUExecutionProvider"])

    def build(self, w, inputs):
        if w.cell != "gru":
            raise Unsupported("ONNX Runtime: only the GRU is benchmarked (SPEC §4)")
        if w.phase != "fwd":
            raise Unsupported("ONNX Runtime: inference only, no training")
        if w.dtype != "float32":  # the model builds, but running it fails: "does not support double yet"
            raise Unsupported(f"ONNX Runtime: its CPU GRU kernel is float32 only, not {w.dtype}")
        sess = self.session(self.model(*inputs[2:6]))
        feeds = {"X": inputs.x, "initial_h": inputs.h0[None]}
        return lambda: sess.run(None, feeds)


# The registry: name -> contender, in the order of the table's columns. To add a peer, write a class
# like Torch (benches/contender_torch.py) and register it here; its build() raises Unsupported for what
# it does not have.
# ONNX Runtime is a default contender only where it is installed (pip install fastrnn[bench]).
CONTENDERS = {
    "fastrnn": FastRNN(None),
    "reference": FastRNN("numpy", slow=True),
    "torch": Torch(),
    "fastrnn.torch": TorchModules(),
}
if importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None:
    CONTENDERS["onnxruntime"] = OnnxRuntime()
CONTENDERS["gemm"] = Gemm()
# The table is about SUBJECT; BOUND is its GEMM-bound time; every other contender is a peer, reported
# as a speedup (peer time / fastrnn time).
SUBJECT, BOUND = "fastrnn", "gemm"


def too_slow(contender, w, max_gflop=REFERENCE_MAX_GFLOP):
    """True when a slow contender (the NumPy reference) should skip workload `w`."""
    return contender.slow and w.gflop > max_gflop


# ---------------------------------------------------------------------------------------------------
# Memory (benches.run --memory)


def min_bytes_per_step(w):
    """What the backward needs from the forward, per time step, at the least (see benches/run.py):
    GRU the state h_t and the gates r, z, n and W_hn h + b_hn (5·B·H values); RNN the state h_t
    (B·H: g'(a) is a function of h = g(a) for tanh and relu)."""
    T, B, I, H = w.dims
    return (5 if w.cell == "gru" else 1) * B * H * np.dtype(w.dtype).itemsize


def cache_nbytes(data, caller_arrays=()):
    """Bytes kept alive by the ndarrays in `data` (a backend's cache: a dict, list or array, nested)
    that are not the caller's arrays nor views of them: a view keeps its whole base array alive, so
    each base array counts once, in full."""
    callers = [a for a in caller_arrays if isinstance(a, np.ndarray)]
    bases, total = set(), 0
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, np.ndarray):
            if any(np.may_share_memory(item, a) for a in callers):
                continue
            base = item
            while isinstance(base.base, np.ndarray):
                base = base.base
            if id(base) not in bases:
                bases.add(id(base))
                total += base.nbytes
    return total


def _proc_status_kib(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _reset_peak_rss():
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0); False if impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def memory_step(contender, w):
    """Memory of one training step (forward + backward) of `w`, measured in this (fresh) process.

    A warm-up step with T = 1 and the same B, I, H loads the libraries, starts their thread pools and
    makes their per-call buffers of a size independent of T; then the step's arrays are made, the
    peak-RSS mark is reset to the current RSS and the step runs once, under tracemalloc (which sees
    NumPy's allocations, not a C library's malloc nor torch's allocator). Returns bytes:
        rss_peak         peak resident memory during the step above what was resident before it
        rss_retained     resident memory after the step (its results dropped) above the same
        traced_peak      peak of the memory tracemalloc traced during the step (NumPy arrays)
        traced_retained  what tracemalloc still sees allocated after the step (buffers kept for reuse)
        cache            (fastrnn only) what the forward's cache keeps beyond the caller's arrays
    Run it in a worker with MEMORY_WORKER_ENV (measure_memory does)."""
    import resource
    import tracemalloc

    T, B, I, H = w.dims
    w_train = Workload(w.cell, w.shape, "train", w.dtype)
    w1 = Workload(w.cell, f"1x{B}x{I}x{H}", "train", w.dtype)
    contender.build(w1, make_inputs(w1))()
    inputs = make_inputs(w_train)
    fn = contender.build(w_train, inputs)
    record = {}
    gc.collect()
    tracemalloc.start()
    exact = _reset_peak_rss()
    rss_before = _proc_status_kib("VmRSS") if exact else None
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fn()
    gc.collect()
    traced_now, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    hwm = _proc_status_kib("VmHWM") if exact else None
    if hwm is not None and rss_before is not None:
        record["rss_peak"] = max(0, hwm - rss_before) * 1024
        record["rss_retained"] = max(0, _proc_status_kib("VmRSS") - rss_before) * 1024
        record["rss_method"] = "VmHWM after clear_refs"
    else:  # the process's high-water mark can only grow: an underestimate if it was higher before
        scale = 1 if sys.platform == "darwin" else 1024
        record["rss_peak"] = max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - maxrss_before) * scale
        record["rss_method"] = "ru_maxrss difference"
    record["traced_peak"], record["traced_retained"] = traced_peak, traced_now
    if hasattr(contender, "cache_bytes"):  # after the step: its allocations must not be in the heap before
        record["cache"] = contender.cache_bytes(w_train, inputs)
    return record


# glibc malloc: every block from 64 KiB up is its own mmap, returned to the system when freed (a fixed
# threshold also turns off glibc's adaptive one), so that RSS follows the live large arrays of every
# library alike instead of freed blocks that stay in the heap. Set in the memory workers only.
MEMORY_WORKER_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "131072"}


# ---------------------------------------------------------------------------------------------------
# Timing


WARMUP_S = 0.2  # the first calls in a fresh worker run slow for every contender (caches, pages, clocks):
WARMUP_CALLS = 2  # seen here, fastrnn's GRU gnmt forward took 74, 67, 66, 56, 60, then 53-55 ms


def time_call(fn, min_time=0.3, min_runs=3):
    """(median seconds, runs) of fn(): warm-up calls (at least WARMUP_CALLS and WARMUP_S seconds), then
    calls until both min_runs and min_time."""
    start, calls = time.perf_counter(), 0
    while calls < WARMUP_CALLS or time.perf_counter() - start < WARMUP_S:
        fn()
        calls += 1
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        times = []
        while len(times) < min_runs or sum(times) < min_time:
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    finally:
        if gc_was_enabled:
            gc.enable()
    return statistics.median(times), len(times)


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


def worker_env(threads):
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "FASTRNN_NUM_THREADS"):
        env[var] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    return env


def _run_worker(name, ws, threads, min_time, timeout, memory=False):
    """Run one worker process; returns (info or None, {key: record}, problem or None)."""
    cmd = [sys.executable, "-m", "benches.harness", "--worker", name, "--threads", str(threads),
           "--dtype", ws[0].dtype, "--min-time", str(min_time)] + (["--memory"] if memory else [])
    for w in ws:
        cmd += ["--workload", w.key]
    env = worker_env(threads)
    if memory:
        env.update(MEMORY_WORKER_ENV)
    problem = None
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        stdout, stderr = proc.stdout, proc.stderr
        if proc.returncode != 0:
            problem = f"worker exited with code {proc.returncode}"
    except subprocess.TimeoutExpired as exc:
        stdout, stderr = exc.stdout or "", exc.stderr or ""
        problem = f"worker timed out after {timeout} s"
    # TimeoutExpired may carry bytes even with text=True
    stdout, stderr = (s.decode(errors="replace") if isinstance(s, bytes) else s for s in (stdout, stderr))
    if problem and stderr.strip():
        problem += ": " + stderr.strip().splitlines()[-1]
    info, records = None, {}
    for line in stdout.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # something the library printed
        if not isinstance(record, dict):
            continue
        if "info" in record:
            info = record["info"]
        elif "missing" in record:
            problem = record["missing"]
        elif "workload" in record:
            records[record["workload"]] = record
    return info, records, problem


@dataclass
class Results:
    """What measure() returns; times in seconds, None where missing."""

    rounds: dict = field(default_factory=dict)  # contender -> key -> [seconds per round]
    info: dict = field(default_factory=dict)  # contender -> what its setup() reported
    problems: dict = field(default_factory=dict)  # contender -> key (or None: all) -> message
    memory: dict = field(default_factory=dict)  # contender -> key -> memory_step record (measure_memory)

    def time(self, contender, w):
        times = self.rounds.get(contender, {}).get(w.key)
        return statistics.median(times) if times else None


def measure(jobs, *, threads, rounds=3, min_time=0.3, timeout=WORKER_TIMEOUT_S, progress=None):
    """Time jobs = {contender name: [Workload]} following SPEC §4; returns Results.

    Every round starts one worker process per contender, in an order rotated from round to round."""
    results = Results()
    names = [name for name, ws in jobs.items() if ws]
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)] if names else []
        for name in order:
            started = time.perf_counter()
            info, records, problem = _run_worker(name, jobs[name], threads, min_time, timeout)
            if info is not None:
                results.info[name] = info
            per_key = results.problems.setdefault(name, {})
            if problem and not records:
                per_key[None] = problem
            for w in jobs[name]:
                record = records.get(w.key)
                if record is None:
                    if problem and records:
                        per_key[w.key] = problem
                elif "time_s" in record:
                    results.rounds.setdefault(name, {}).setdefault(w.key, []).append(record["time_s"])
                elif "error" in record:
                    per_key[w.key] = record["error"]
            if progress:
                progress(f"round {r + 1}/{rounds}: {name} ({len(jobs[name])} workloads) "
                         f"{time.perf_counter() - started:.1f} s" + (f" [{problem}]" if problem else ""))
    results.problems = {name: p for name, p in results.problems.items() if p}
    return results


def measure_memory(jobs, *, threads, timeout=WORKER_TIMEOUT_S, progress=None):
    """Memory of one training step for jobs = {contender name: [Workload]}: one fresh worker process
    per contender and workload (memory_step). Returns Results whose `memory` maps
    contender -> key -> memory_step's record."""
    results = Results()
    for name, ws in jobs.items():
        per_key = results.problems.setdefault(name, {})
        for w in ws:
            started = time.perf_counter()
            info, records, problem = _run_worker(name, [w], threads, 0.0, timeout, memory=True)
            if info is not None:
                results.info[name] = info
            record = records.get(w.key, {})
            if "memory" in record:
                results.memory.setdefault(name, {})[w.key] = record["memory"]
            elif "error" in record:
                per_key[w.key] = record["error"]
            elif problem and "unsupported" not in record:
                per_key[w.key if records else None] = problem
            if progress:
                progress(f"memory: {name} {w.key} {time.perf_counter() - started:.1f} s"
                         + (f" [{problem}]" if problem else ""))
            if problem and not records:
                break  # not installed, or the worker fails to start: the same for every workload
    results.problems = {name: p for name, p in results.problems.items() if p}
    return results


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
