"""PyTorch-compatible single-step layers (torch.nn.RNNCell / torch.nn.GRUCell), NumPy in, NumPy out.

    cell = fastrnn.GRUCell(input_size, hidden_size, bias=True, reset_after=True,
                           dtype=np.float32, seed=None, backend=None)
    cell = fastrnn.RNNCell(input_size, hidden_size, bias=True, nonlinearity="tanh",
                           dtype=np.float32, seed=None, backend=None)
    h_next = cell(x, h=None)          # x (B, input_size) -> (B, hidden_size); x (input_size,) -> (hidden_size,)
    dx, dh = cell.backward(d_h_next)  # parameter gradients accumulate (+=) into cell.grads

One step is the layer's kernel with T = 1 (`fastrnn.functional` on x[None]), so a cell called T times
computes what the layer computes over T steps (to rounding: a single step reads the weights in place,
by dot products, where a longer call packs them and sums in another order; tests/test_cells.py). Parameters carry torch's names and shapes
("weight_ih" (G*H, I), "weight_hh" (G*H, H), "bias_ih", "bias_hh" (G*H,); GRU rows r, z, n), so
`cell.load_state_dict(torch_cell.state_dict())` gives the same cell; with the same `seed`, a cell and a
one-layer `fastrnn.GRU` / `fastrnn.RNN` start from the same weights.

Backpropagation through an unrolled loop: every forward call in training mode (the default) records
its step on the cell's tape, and every `backward` call backpropagates through the most recent step not
yet backpropagated, and removes it from the tape (as torch frees a graph after backward):

    h, hs = None, []
    for t in range(T):
        h = cell(x[t], h)                       # records steps 0 .. T-1
        hs.append(h)
    dh = np.zeros_like(h)
    for t in reversed(range(T)):                # d_hs[t]: the loss's gradient with respect to hs[t]
        dx[t], dh = cell.backward(d_hs[t] + dh) # pops step t; dh is then the gradient for hs[t-1] (or h0)

In evaluation mode (`cell.eval()`) the tape holds only the last step, so a long inference loop keeps
no memory behind it; `clear_tape()` drops every recorded step; `pending_steps` counts them.
The tape is per thread: threads sharing a cell each unroll and backpropagate their own steps, and
their gradients add up in `grads` (under a lock).
"""
import math

import numpy as np

from . import _backends
from . import functional as F
from ._params import Parameters
from ._validation import check, check_shape, real_array

__all__ = ["RNNCell", "GRUCell"]


class _Cell(Parameters):
    """What RNNCell and GRUCell share; a subclass sets `_kind` (fastrnn.functional.KINDS) and stores its option."""

    _kind = None
    _what = "layer"

    def __init__(self, input_size, hidden_size, bias=True, dtype=np.float32, seed=None, backend=None):
        self.input_size = check("input_size", input_size)
        self.hidden_size = check("hidden_size", hidden_size)
        self.bias = check("bias", bias)
        self._init_params(dtype)
        if backend is not None:
            _backends.get(backend)  # ValueError for an unknown or unbuilt backend
        self.backend = backend
        self.seed = seed

        # The same draws, in the same order, as a one-layer fastrnn.RNN / fastrnn.GRU with this seed.
        self._rng = np.random.default_rng(seed)
        G, H, I = F.KINDS[self._kind].gates, self.hidden_size, self.input_size
        shapes = [("weight_ih", (G * H, I)), ("weight_hh", (G * H, H))]
        if self.bias:
            shapes += [("bias_ih", (G * H,)), ("bias_hh", (G * H,))]
        self._add_uniform(self._rng, 1.0 / math.sqrt(H), shapes)

    # ---- modes (parameters, state dicts: fastrnn._params.Parameters) -----------------------------

    def train(self, mode=True):
        """Training mode (every forward step is recorded for backward) or, with mode=False, evaluation
        mode (only the last step is kept); returns self."""
        super().train(mode)
        if not self.training:
            del self._tape[:-1]
        return self

    @property
    def _tape(self):
        """This thread's recorded steps (each thread unrolls its own loop through a shared cell)."""
        st = self._thread_state()
        tape = getattr(st, "tape", None)
        if tape is None:
            tape = st.tape = []
        return tape

    @property
    def pending_steps(self):
        """How many forward steps this thread has recorded and not yet backpropagated."""
        return len(self._tape)

    def clear_tape(self):
        """Forget every forward step this thread has recorded (their caches are freed)."""
        self._tape.clear()

    # ---- forward and backward ------------------------------------------------------------------

    def forward(self, x, h=None):
        """h_next = cell(x, h=None): x (B, input_size) and h (B, hidden_size), or unbatched x
        (input_size,) and h (hidden_size,); h None means zeros. Returns h_next shaped like h."""
        x = real_array("x", x, self.dtype)
        I, H = self.input_size, self.hidden_size
        if x.ndim == 2:
            unbatched = False
            if x.shape[1] != I:
                raise ValueError(f"x: expected shape ({x.shape[0]}, {I}) (batch, input_size), got {x.shape}")
            hshape = (x.shape[0], H)
        elif x.ndim == 1:
            unbatched = True
            if x.shape[0] != I:
                raise ValueError(f"x: expected shape ({I},) (input_size,) for an unbatched input, got {x.shape}")
            x = x[None]
            hshape = (H,)
        else:
            raise ValueError(f"x: expected 2 dimensions (batch, input_size={I}) or 1 (input_size,), "
                             f"got shape {x.shape}")
        if h is not None:
            h = real_array("h", h, self.dtype)
            check_shape("h", h, hshape, "(batch, hidden_size)" if not unbatched
                         else "(hidden_size,) for an unbatched input")
            if unbatched:
                h = h[None]
        p = self._params
        _, h_n, cache = self._forward_kernel(x[None], h, p["weight_ih"], p["weight_hh"],
                                             p.get("bias_ih"), p.get("bias_hh"))
        if not self.training:
            self._tape.clear()
        if cache is not None:           # None under fastrnn.no_grad(): nothing to record
            self._tape.append((cache, unbatched))
        return h_n[0] if unbatched else h_n

    __call__ = forward

    def backward(self, d_h_next):
        """dx, dh = cell.backward(d_h_next): gradients of the most recent forward step not yet
        backpropagated (which is then dropped from the tape); parameter gradients are added to
        `cell.grads`. dx and dh are shaped like that step's x and h."""
        if not self._tape:
            raise RuntimeError(f"{type(self).__name__}.backward: no forward step left to backpropagate "
                               "through (call the cell on an input first; each step is backpropagated "
                               "once, in eval mode only the last step is kept, and steps run under "
                               "fastrnn.no_grad() are not recorded)")
        cache, unbatched = self._tape[-1]
        _, B, _, H = cache.shape
        d = real_array("d_h_next", d_h_next, self.dtype)
        if unbatched:
            check_shape("d_h_next", d, (H,), "(the shape of the forward output)")
        else:
            check_shape("d_h_next", d, (B, H), "(the shape of the forward output)")
        # The kernel adds into grads itself (no new arrays to allocate, fault in and add: most of a
        # small step's backward); it fails before adding anything, which leaves grads and the tape
        # untouched. Grads replaced by arrays it cannot add into take the slower path.
        g = self.grads
        into = (g["weight_ih"], g["weight_hh"], g.get("bias_ih"), g.get("bias_hh"))
        # Other threads' backwards may add into the same grads: one at a time.
        if all(a is None or (type(a) is np.ndarray and a.dtype == self.dtype and a.flags.c_contiguous
                             and a.flags.writeable) for a in into):
            with self._grads_lock:
                dx, dh = self._backward_kernel(d.reshape(1, B, H), None, cache, into)[:2]
            self._tape.pop()
        else:
            dx, dh, dw_ih, dw_hh, db_ih, db_hh = self._backward_kernel(d.reshape(1, B, H), None, cache)
            self._tape.pop()
            with self._grads_lock:
                g["weight_ih"] += dw_ih
                g["weight_hh"] += dw_hh
                if self.bias:
                    g["bias_ih"] += db_ih
                    g["bias_hh"] += db_hh
        dx = dx[0]
        return (dx[0], dh[0]) if unbatched else (dx, dh)

    def _forward_kernel(self, x, h0, w_ih, w_hh, b_ih, b_hh):
        return F.forward(self._kind, x, h0, w_ih, w_hh, b_ih, b_hh, getattr(self, F.KINDS[self._kind].option),
                         False, None, self.backend)

    def _backward_kernel(self, d_out, d_hn, cache, grads=None):
        return F.backward(self._kind, d_out, d_hn, cache, grads)

    # ---- printing ------------------------------------------------------------------------------

    def _extra_options(self):
        kind = F.KINDS[self._kind]
        value = getattr(self, kind.option)
        return "" if value == kind.default else f", {kind.option}={value!r}"

    def __repr__(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        s += self._extra_options()
        if self.dtype != np.float32:
            s += f", dtype={self.dtype}"
        if self.backend is not None:
            s += f", backend={self.backend!r}"
        return f"{type(self).__name__}({s})"


class RNNCell(_Cell):
    """One step of the Elman RNN, h' = g(w_ih x + b_ih + w_hh h + b_hh), g = tanh or relu; as
    torch.nn.RNNCell."""

    _kind = "rnn"

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", dtype=np.float32,
                 seed=None, backend=None):
        self.nonlinearity = check("nonlinearity", nonlinearity)
        super().__init__(input_size, hidden_size, bias, dtype, seed, backend)


class GRUCell(_Cell):
    """One step of the GRU, PyTorch gate order (r, z, n); reset_after=False is Cho et al. 2014;
    as torch.nn.GRUCell."""

    _kind = "gru"

    def __init__(self, input_size, hidden_size, bias=True, reset_after=True, dtype=np.float32,
                 seed=None, backend=None):
        self.reset_after = check("reset_after", reset_after)
        super().__init__(input_size, hidden_size, bias, dtype, seed, backend)
