"""What is timed (SPEC §4): the standard shapes, the workloads, their inputs and their GEMM work.

    SHAPES       the standard shapes, name -> Dims(T, B, I, H); `parse_shapes` also takes "all", the
                 unlisted "tiny" (smoke runs) and literal shapes written TxBxIxH, e.g. "50x32x128x128".
    Workload     one thing to time: a cell ("rnn", "gru"), a shape, a dtype and a pass ("fwd", "train");
                 `gflop` is its GEMM work per call.
    make_inputs  the one set of arrays every contender gets for a workload.

"fwd" is one inference forward call (under `fastrnn.no_grad()` / `torch.no_grad()`: nothing kept for
a backward; ONNX Runtime is inference only); "train" is forward + backward with a fixed random d_out (torch:
`(out * d_out).sum().backward()`, with x and h0 requiring gradients as fastrnn returns dx and dh0).
"step" and "step-train" are one call of the single-step layers (fastrnn.GRUCell / RNNCell against
torch.nn.GRUCell / RNNCell) on the shape's first step, B, I, H (T ignored), inference and call +
backward; "gemm" is then the products of that one step.
"""
import os
from collections import namedtuple
from dataclasses import dataclass

import numpy as np

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
_UNLISTED_SHAPES = {"tiny": Dims(10, 4, 16, 16)}  # for smoke runs of the benchmarks themselves

CELLS = ("rnn", "gru")
GATES = {"rnn": 1, "gru": 3}
PASSES = ("fwd", "train")
# One step through the single-step layers (fastrnn.RNNCell / GRUCell, torch.nn.RNNCell / GRUCell) at the
# shape's B, I, H (T is ignored; x is the shape's first step): "step" an inference call, "step-train"
# a call and its backward. What they measure is mostly the per-call overhead of each library.
STEP_PASSES = ("step", "step-train")
DTYPES = ("float32", "float64")


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
