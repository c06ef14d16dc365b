"""PyTorch-compatible recurrent layers, NumPy in, NumPy out, built on `fastrnn.functional`.

    gru = fastrnn.GRU(input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                      dropout=0.0, bidirectional=False, reset_after=True,
                      dtype=np.float32, seed=None, backend=None)
    out, h_n = gru(x, h0=None, lengths=None)   # out (T, B, D*H) or (B, T, D*H); h_n (L*D, B, H)
    dx, dh0 = gru.backward(d_out, d_hn=None)    # parameter gradients accumulate into gru.grads

Parameters carry PyTorch's names, shapes and order ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0",
"bias_hh_l0", then the "_reverse" ones, then layer 1 ...), so `load_state_dict(torch_gru.state_dict())`
gives the same network.

A bidirectional layer runs the reverse direction with `reverse=True` and the same `lengths`: each
sequence is reversed within its own length, as PyTorch does for packed sequences. Dropout (inverted,
scaled by 1/(1-p)) is applied to the output of every layer but the last, in training mode only; its
masks come from a NumPy Generator seeded by `seed`, and `backward` goes through the same masks.
"""
import math
import warnings

import numpy as np

from . import _backends
from . import functional as F
from ._params import Parameters, StateDictError
from ._validation import check, check_shape, lengths as checked_lengths, real_array

__all__ = ["RNN", "GRU", "StateDictError"]


class _RecurrentLayer(Parameters):
    """What RNN and GRU share; a subclass sets `_kind` (fastrnn.functional.KINDS) and stores its option."""

    _kind = None
    _what = "layer"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype=np.float32, seed=None, backend=None):
        self.input_size = check("input_size", input_size)
        self.hidden_size = check("hidden_size", hidden_size)
        self.num_layers = check("num_layers", num_layers)
        self.bias = check("bias", bias)
        self.batch_first = check("batch_first", batch_first)
        self.bidirectional = check("bidirectional", bidirectional)
        self.dropout = check("dropout", dropout)
        if self.dropout > 0 and self.num_layers == 1:
            warnings.warn("dropout adds dropout after every recurrent layer but the last, so with "
                          f"num_layers=1 it does nothing (got dropout={self.dropout})", UserWarning,
                          stacklevel=3)
        self._init_params(dtype)
        if backend is not None:
            _backends.get(backend)  # ValueError for an unknown or unbuilt backend
        self.backend = backend
        self.seed = seed
        self.num_directions = 2 if self.bidirectional else 1

        self._rng = np.random.default_rng(seed)
        G, H = F.KINDS[self._kind].gates, self.hidden_size
        for layer in range(self.num_layers):
            in_size = self.input_size if layer == 0 else H * self.num_directions
            for direction in range(self.num_directions):
                shapes = [("weight_ih", (G * H, in_size)), ("weight_hh", (G * H, H))]
                if self.bias:
                    shapes += [("bias_ih", (G * H,)), ("bias_hh", (G * H,))]
                self._add_uniform(self._rng, 1.0 / math.sqrt(H),
                                  [(self._name(stem, layer, direction), shape) for stem, shape in shapes])
        self._ctx = None

    # ---- naming, modes, parameters -------------------------------------------------------------

    @staticmethod
    def _name(stem, layer, direction):
        return f"{stem}_l{layer}" + ("_reverse" if direction == 1 else "")

    def _weights(self, layer, direction):
        p = self._params
        w_ih = p[self._name("weight_ih", layer, direction)]
        w_hh = p[self._name("weight_hh", layer, direction)]
        if self.bias:
            return w_ih, w_hh, p[self._name("bias_ih", layer, direction)], p[self._name("bias_hh", layer, direction)]
        return w_ih, w_hh, None, None

    # ---- forward and backward ------------------------------------------------------------------

    def _forward_kernel(self, x, h0, w_ih, w_hh, b_ih, b_hh, reverse, lengths):
        return F.forward(self._kind, x, h0, w_ih, w_hh, b_ih, b_hh, getattr(self, F.KINDS[self._kind].option),
                         reverse, lengths, self.backend)

    def _backward_kernel(self, d_out, d_hn, cache):
        return F.backward(self._kind, d_out, d_hn, cache)

    def forward(self, x, h0=None, lengths=None):
        """out, h_n = layer(x, h0=None, lengths=None); see the module docstring."""
        x = real_array("x", x, self.dtype)
        layout = "(B, T, input_size)" if self.batch_first else "(T, B, input_size)"
        if x.ndim != 3:
            raise ValueError(f"x: expected 3 dimensions {layout}, got shape {x.shape}")
        if x.shape[2] != self.input_size:
            expected = x.shape[:2] + (self.input_size,)
            raise ValueError(f"x: expected shape {expected} {layout} with input_size={self.input_size}, "
                             f"got {x.shape}")
        if self.batch_first:
            x = x.transpose(1, 0, 2)
        T, B, _ = x.shape
        L, D, H = self.num_layers, self.num_directions, self.hidden_size
        if h0 is not None:
            h0 = real_array("h0", h0, self.dtype)
            check_shape("h0", h0, (L * D, B, H), "(num_layers*num_directions, B, hidden_size)")
        lengths = checked_lengths(lengths, T, B)
        use_dropout = self.training and self.dropout > 0

        caches, masks, h_n = [], [], []
        inp = x
        for layer in range(L):
            outs = []
            for direction in range(D):
                i = layer * D + direction
                out, hn, cache = self._forward_kernel(
                    inp, None if h0 is None else h0[i], *self._weights(layer, direction),
                    reverse=direction == 1, lengths=lengths)
                outs.append(out)
                h_n.append(hn)
                caches.append(cache)
            out = outs[0] if D == 1 else np.concatenate(outs, axis=2)
            mask = None
            if use_dropout and layer < L - 1:
                keep = self._rng.random(out.shape) >= self.dropout
                mask = keep.astype(self.dtype) / self.dtype.type(1.0 - self.dropout)
                out = out * mask
            masks.append(mask)
            inp = out
        h_n = np.stack(h_n) if h_n else np.zeros((L * D, B, H), self.dtype)
        self._ctx = {"caches": caches, "masks": masks, "T": T, "B": B, "batch_first": self.batch_first}
        if caches and caches[0] is None:     # under fastrnn.no_grad(): nothing kept for a backward
            self._ctx = "no_grad"
        if self.batch_first:
            inp = np.ascontiguousarray(inp.transpose(1, 0, 2))
        return inp, h_n

    __call__ = forward

    def backward(self, d_out, d_hn=None):
        """dx, dh0 = layer.backward(d_out, d_hn=None): gradients of this thread's last forward call;
        parameter gradients are added to `layer.grads` (under a lock: threads may share a layer)."""
        ctx = self._ctx
        if ctx == "no_grad":
            raise RuntimeError(f"{type(self).__name__}.backward: the last forward ran under fastrnn.no_grad() "
                               "and kept nothing for a backward; run it outside no_grad to backpropagate")
        if ctx is None:
            raise RuntimeError(f"{type(self).__name__}.backward: call the layer on an input (forward) "
                               "before backward; there is no forward pass to backpropagate through")
        T, B = ctx["T"], ctx["B"]
        L, D, H = self.num_layers, self.num_directions, self.hidden_size
        d_out = real_array("d_out", d_out, self.dtype)
        expected = (B, T, D * H) if ctx["batch_first"] else (T, B, D * H)
        check_shape("d_out", d_out, expected, "(the shape of the forward output)")
        if ctx["batch_first"]:
            d_out = d_out.transpose(1, 0, 2)
        if d_hn is None:
            d_hn = np.zeros((L * D, B, H), self.dtype)
        else:
            d_hn = real_array("d_hn", d_hn, self.dtype)
            check_shape("d_hn", d_hn, (L * D, B, H), "(the shape of h_n)")

        # Compute every gradient first, then accumulate: an error leaves grads untouched.
        dh0 = np.zeros((L * D, B, H), self.dtype)
        param_grads = []
        g = d_out
        for layer in reversed(range(L)):
            mask = ctx["masks"][layer]
            if mask is not None:
                g = g * mask
            d_inp = None
            for direction in range(D):
                i = layer * D + direction
                dx, dh, dw_ih, dw_hh, db_ih, db_hh = self._backward_kernel(
                    g[:, :, direction * H:(direction + 1) * H], d_hn[i], ctx["caches"][i])
                dh0[i] = dh
                d_inp = dx if d_inp is None else d_inp + dx
                param_grads.append((layer, direction, dw_ih, dw_hh, db_ih, db_hh))
            g = d_inp
        with self._grads_lock:            # other threads' backwards may be adding too
            for layer, direction, dw_ih, dw_hh, db_ih, db_hh in param_grads:
                self.grads[self._name("weight_ih", layer, direction)] += dw_ih
                self.grads[self._name("weight_hh", layer, direction)] += dw_hh
                if self.bias:
                    self.grads[self._name("bias_ih", layer, direction)] += db_ih
                    self.grads[self._name("bias_hh", layer, direction)] += db_hh
        dx = g
        if ctx["batch_first"]:
            dx = np.ascontiguousarray(dx.transpose(1, 0, 2))
        return dx, dh0

    # ---- printing ------------------------------------------------------------------------------

    def _extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        s += self._extra_options()
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.dtype != np.float32:
            s += f", dtype={self.dtype}"
        if self.backend is not None:
            s += f", backend={self.backend!r}"
        return s

    def _extra_options(self):
        kind = F.KINDS[self._kind]
        value = getattr(self, kind.option)
        return "" if value == kind.default else f", {kind.option}={value!r}"

    def __repr__(self):
        return f"{type(self).__name__}({self._extra_repr()})"


class RNN(_RecurrentLayer):
    """Elman RNN, h_t = g(w_ih x_t + b_ih + w_hh h_{t-1} + b_hh), g = tanh or relu; as torch.nn.RNN."""

    _kind = "rnn"

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, dtype=np.float32, seed=None,
                 backend=None):
        self.nonlinearity = check("nonlinearity", nonlinearity)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype, seed, backend)


class GRU(_RecurrentLayer):
    """Gated recurrent unit, PyTorch gate order (r, z, n); reset_after=False is Cho et al. 2014."""

    _kind = "gru"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, reset_after=True, dtype=np.float32, seed=None,
                 backend=None):
        self.reset_after = check("reset_after", reset_after)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype, seed, backend)
