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
import numbers
import warnings
from collections import OrderedDict, namedtuple

import numpy as np

from . import _backends
from . import functional as F
from ._threads import PerThread

__all__ = ["RNN", "GRU", "StateDictError"]

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _float_dtype(dtype):
    """`dtype` as np.float32 or np.float64; TypeError for anything else."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype: expected numpy.float32 or numpy.float64, got {dtype!r}") from None
    if dt not in _FLOAT_DTYPES:
        raise TypeError(f"dtype: expected numpy.float32 or numpy.float64, got {dt}")
    return dt

# What load_state_dict(strict=False) returns, as torch.nn.Module.load_state_dict does.
IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class StateDictError(KeyError, ValueError):
    """Missing or unexpected keys in `load_state_dict`: both a KeyError and a ValueError."""

    def __str__(self):  # KeyError would show the message in quotes
        return str(self.args[0]) if self.args else ""


def _to_numpy(a):
    """A torch tensor (anything with detach/cpu/numpy) as a NumPy array; anything else untouched."""
    if all(hasattr(a, attr) for attr in ("detach", "cpu", "numpy")):
        return a.detach().cpu().numpy()
    return a


def _real_array(name, a, dtype):
    """`a` as an ndarray of `dtype`; real inputs (bool, ints, any float) are cast, anything else
    (complex, object, strings, None) is a TypeError."""
    if type(a) is np.ndarray and a.dtype is dtype:
        return a                  # the common case, without the checks below (a cell's step notices them)
    a = _to_numpy(a)
    if a is None:
        raise TypeError(f"{name}: expected an array, got None")
    try:
        arr = np.asarray(a)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name}: cannot be converted to an array ({exc})") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected a real (integer or floating) array, got dtype {arr.dtype}")
    return arr.astype(dtype, copy=False)


def _check_shape(name, arr, expected, meaning):
    if arr.shape != tuple(expected):
        raise ValueError(f"{name}: expected shape {tuple(expected)} {meaning}, got {arr.shape}")


def _positive_int(name, value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected a positive int, got {value!r} ({type(value).__name__})")
    if value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")
    return int(value)


def _flag(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {value!r} ({type(value).__name__})")
    return bool(value)


class _RecurrentLayer(PerThread):
    """What RNN and GRU share; a subclass sets `_gates` (G) and the two kernels."""

    _gates = None

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype=np.float32, seed=None, backend=None):
        self.input_size = _positive_int("input_size", input_size)
        self.hidden_size = _positive_int("hidden_size", hidden_size)
        self.num_layers = _positive_int("num_layers", num_layers)
        self.bias = _flag("bias", bias)
        self.batch_first = _flag("batch_first", batch_first)
        self.bidirectional = _flag("bidirectional", bidirectional)
        if isinstance(dropout, (bool, np.bool_)) or not isinstance(dropout, numbers.Real):
            raise TypeError(f"dropout: expected a number in [0, 1), got {dropout!r}")
        if not 0.0 <= float(dropout) < 1.0:  # also refuses NaN
            raise ValueError(f"dropout: expected a probability in [0, 1), got {dropout!r}")
        self.dropout = float(dropout)
        if self.dropout > 0 and self.num_layers == 1:
            warnings.warn("dropout adds dropout after every recurrent layer but the last, so with "
                          f"num_layers=1 it does nothing (got dropout={self.dropout})", UserWarning,
                          stacklevel=3)
        self.dtype = _float_dtype(dtype)
        if backend is not None:
            _backends.get(backend)  # ValueError for an unknown or unbuilt backend
        self.backend = backend
        self.seed = seed
        self.num_directions = 2 if self.bidirectional else 1
        self.training = True

        self._rng = np.random.default_rng(seed)
        self._params = OrderedDict()
        G, H = self._gates, self.hidden_size
        bound = 1.0 / math.sqrt(H)
        for layer in range(self.num_layers):
            in_size = self.input_size if layer == 0 else H * self.num_directions
            for direction in range(self.num_directions):
                shapes = [("weight_ih", (G * H, in_size)), ("weight_hh", (G * H, H))]
                if self.bias:
                    shapes += [("bias_ih", (G * H,)), ("bias_hh", (G * H,))]
                for stem, shape in shapes:
                    values = self._rng.uniform(-bound, bound, size=shape)
                    self._params[self._name(stem, layer, direction)] = values.astype(self.dtype)
        self.grads = OrderedDict((k, np.zeros_like(v)) for k, v in self._params.items())
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

    def train(self, mode=True):
        """Training mode (dropout active) or, with mode=False, evaluation mode; returns self."""
        self.training = _flag("mode", mode)
        return self

    def eval(self):
        """Evaluation mode: no dropout; returns self."""
        return self.train(False)

    def parameters(self):
        """Dict of PyTorch names -> the live parameter arrays (update them in place to train)."""
        return OrderedDict(self._params)

    def named_parameters(self):
        """(name, array) pairs, as parameters().items()."""
        return list(self._params.items())

    def zero_grad(self):
        """Set every accumulated gradient to zero (in place: references to grads stay valid)."""
        for g in self.grads.values():
            g.fill(0)

    def state_dict(self):
        """Copies of the parameters, in PyTorch's key order."""
        return OrderedDict((k, v.copy()) for k, v in self._params.items())

    def load_state_dict(self, state_dict, strict=True):
        """Copy `state_dict` (NumPy arrays or torch tensors) into the parameters, cast to the layer's
        dtype. strict=True: missing or unexpected keys raise StateDictError (a KeyError and a
        ValueError) naming them. A wrong shape raises ValueError. Nothing is changed on error.
        Returns (missing_keys, unexpected_keys) as torch does."""
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"state_dict: expected a mapping of names to arrays, got {type(state_dict).__name__}")
        keys = list(state_dict.keys())
        missing = [k for k in self._params if k not in state_dict]
        unexpected = [k for k in keys if k not in self._params]
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append(f"missing keys {missing}")
            if unexpected:
                parts.append(f"unexpected keys {unexpected}")
            raise StateDictError(f"load_state_dict for {type(self).__name__}: " + "; ".join(parts))
        new = {}
        for k in keys:
            if k not in self._params:
                continue
            arr = _real_array(k, state_dict[k], self.dtype)
            _check_shape(k, arr, self._params[k].shape, "for this layer")
            new[k] = arr
        for k, arr in new.items():
            self._params[k][...] = arr
        return IncompatibleKeys(missing, unexpected)

    # ---- forward and backward ------------------------------------------------------------------

    def _forward_kernel(self, x, h0, w_ih, w_hh, b_ih, b_hh, reverse, lengths):
        raise NotImplementedError

    def _backward_kernel(self, d_out, d_hn, cache):
        raise NotImplementedError

    def _lengths(self, lengths, T, B):
        if lengths is None:
            return None
        arr = np.asarray(_to_numpy(lengths))
        if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"lengths: expected an integer array of shape ({B},), got dtype {arr.dtype}")
        if arr.shape != (B,):
            raise ValueError(f"lengths: expected shape ({B},) (one length per sequence), got {arr.shape}")
        if arr.size and (arr.min() < 0 or arr.max() > T):
            raise ValueError(f"lengths: every length must lie in [0, T={T}], got min {arr.min()} max {arr.max()}")
        return arr.astype(np.int64)

    def forward(self, x, h0=None, lengths=None):
        """out, h_n = layer(x, h0=None, lengths=None); see the module docstring."""
        x = _real_array("x", x, self.dtype)
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
            h0 = _real_array("h0", h0, self.dtype)
            _check_shape("h0", h0, (L * D, B, H), "(num_layers*num_directions, B, hidden_size)")
        lengths = self._lengths(lengths, T, B)
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
        d_out = _real_array("d_out", d_out, self.dtype)
        expected = (B, T, D * H) if ctx["batch_first"] else (T, B, D * H)
        _check_shape("d_out", d_out, expected, "(the shape of the forward output)")
        if ctx["batch_first"]:
            d_out = d_out.transpose(1, 0, 2)
        if d_hn is None:
            d_hn = np.zeros((L * D, B, H), self.dtype)
        else:
            d_hn = _real_array("d_hn", d_hn, self.dtype)
            _check_shape("d_hn", d_hn, (L * D, B, H), "(the shape of h_n)")

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
        return ""

    def __repr__(self):
        return f"{type(self).__name__}({self._extra_repr()})"


class RNN(_RecurrentLayer):
    """Elman RNN, h_t = g(w_ih x_t + b_ih + w_hh h_{t-1} + b_hh), g = tanh or relu; as torch.nn.RNN."""

    _gates = 1

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, dtype=np.float32, seed=None,
                 backend=None):
        if not isinstance(nonlinearity, str) or nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype, seed, backend)

    def _forward_kernel(self, x, h0, w_ih, w_hh, b_ih, b_hh, reverse, lengths):
        return F.rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity=self.nonlinearity,
                             reverse=reverse, lengths=lengths, backend=self.backend)

    def _backward_kernel(self, d_out, d_hn, cache):
        return F.rnn_backward(d_out, d_hn, cache)

    def _extra_options(self):
        return "" if self.nonlinearity == "tanh" else f", nonlinearity={self.nonlinearity!r}"


class GRU(_RecurrentLayer):
    """Gated recurrent unit, PyTorch gate order (r, z, n); reset_after=False is Cho et al. 2014."""

    _gates = 3

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, reset_after=True, dtype=np.float32, seed=None,
                 backend=None):
        self.reset_after = _flag("reset_after", reset_after)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype, seed, backend)

    def _forward_kernel(self, x, h0, w_ih, w_hh, b_ih, b_hh, reverse, lengths):
        return F.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, reset_after=self.reset_after,
                             reverse=reverse, lengths=lengths, backend=self.backend)

    def _backward_kernel(self, d_out, d_hn, cache):
        return F.gru_backward(d_out, d_hn, cache)

    def _extra_options(self):
        return "" if self.reset_after else ", reset_after=False"
