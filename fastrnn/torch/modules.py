"""fastrnn.torch.GRU / fastrnn.torch.RNN: torch.nn.Modules with torch.nn.GRU / torch.nn.RNN's
constructor, parameter names, shapes, order and initialisation, running on fastrnn's C kernels
through the operators of `fastrnn.torch._ops` (autograd included).

    gru = fastrnn.torch.GRU(input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                            dropout=0.0, bidirectional=False, device=None, dtype=None, reset_after=True)
    out, h_n = gru(input, hx=None, lengths=None)

`input` is (T, B, I), (B, T, I) with batch_first, unbatched (T, I), or a PackedSequence (then `out`
is a PackedSequence with the same batch_sizes, sorted_indices and unsorted_indices, and h_n is in
the caller's batch order, as torch returns it). `lengths` (B,) (an extension: padded input without
packing) runs each sequence over its first lengths[b] steps; the outputs past a sequence's end are 0
and h_n is its state at its last step. The reverse direction of a bidirectional layer reverses each
sequence within its own length. Dropout between layers (training mode) draws from torch's RNG.

The kernels cover CPU float32 / float64. A module whose parameters are elsewhere (CUDA, meta) or of
another dtype (float16, bfloat16) runs torch's own implementation instead, with one UserWarning
(a GRU with reset_after=False, which torch has not, and lengths= are refused there with a ValueError).
Bad input gets an exception naming the argument, of the kinds both fastrnn (SPEC §3) and torch
raise: `ArgumentError` (a ValueError and a RuntimeError) for shapes, sizes and devices,
`DtypeError` (a TypeError, ValueError and RuntimeError) for a dtype that differs from the parameters'.
"""
import math
import numbers
import warnings

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from . import _ops
from .._validation import check

__all__ = ["GRU", "RNN", "ArgumentError", "DtypeError"]

_DTYPES = (torch.float32, torch.float64)


class ArgumentError(ValueError, RuntimeError):
    """A wrong shape, size or device: ValueError as fastrnn raises it, RuntimeError as torch's RNNs do."""


class DtypeError(TypeError, ValueError, RuntimeError):
    """A tensor whose dtype differs from the parameters': TypeError (fastrnn), ValueError / RuntimeError (torch)."""


def check_tensor(name, t, like):
    """`t` is a tensor on `like`'s device, the CPU (on_fast_path), with `like`'s dtype (`like`: the
    module's first parameter)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if not t.is_cpu:                    # (comparing devices costs a microsecond, a cell's step notices)
        raise ArgumentError(f"{name}: expected a tensor on {like.device} (the parameters' device), got one "
                            f"on {t.device}")
    if t.dtype != like.dtype:
        raise DtypeError(f"{name}: expected dtype {like.dtype} (the parameters' dtype), got {t.dtype}")


def on_fast_path(module, w):
    """True when the kernels cover `w` (a module's first parameter); otherwise False, with a UserWarning
    that torch's own implementation runs instead (once per module, device and dtype)."""
    if w.is_cpu and w.dtype in _DTYPES:
        return True
    if module.__dict__.get("_fallback_warned") != (w.device, w.dtype):
        module.__dict__["_fallback_warned"] = (w.device, w.dtype)
        warnings.warn(f"fastrnn.torch.{type(module).__name__}: parameters on {w.device} with dtype {w.dtype}; "
                      "fastrnn's kernels cover CPU float32/float64, so torch's own implementation runs",
                      UserWarning, stacklevel=5)     # 5: the caller of module(...), past nn.Module.__call__
    return False


def check_constructor(sizes, dtype):
    """The size arguments of a constructor (positive ints) and its dtype (floating point or None)."""
    for name, value in sizes:
        check(name, value)
    if dtype is not None and not torch.empty(0, dtype=dtype).dtype.is_floating_point:
        raise TypeError(f"dtype: expected a floating-point dtype, got {dtype}")


def reset_parameters(module):
    """U(-1/sqrt(H), 1/sqrt(H)) for every parameter, as torch's RNNs and cells initialise them."""
    stdv = 1.0 / math.sqrt(module.hidden_size)
    for w in module.parameters():
        nn.init.uniform_(w, -stdv, stdv)


class _RNNBase(nn.Module):
    _gates = None

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, device=None, dtype=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        check_constructor((("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)),
                          dtype)
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Number) or not 0 <= dropout <= 1:
            raise ValueError(f"dropout: expected a number in [0, 1], got {dropout!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so non-zero "
                          f"dropout expects num_layers greater than 1, but got dropout={dropout} and "
                          f"num_layers={num_layers}", UserWarning, stacklevel=3)
        self.input_size, self.hidden_size, self.num_layers = int(input_size), int(hidden_size), int(num_layers)
        self.bias, self.batch_first = bool(bias), bool(batch_first)
        self.dropout, self.bidirectional = float(dropout), bool(bidirectional)
        self.proj_size = 0
        D = 2 if self.bidirectional else 1
        G, H = self._gates, self.hidden_size
        self._flat_weights_names = []
        for layer in range(self.num_layers):
            in_size = self.input_size if layer == 0 else H * D
            for direction in range(D):
                suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
                shapes = [("weight_ih", (G * H, in_size)), ("weight_hh", (G * H, H))]
                if self.bias:
                    shapes += [("bias_ih", (G * H,)), ("bias_hh", (G * H,))]
                for stem, shape in shapes:
                    self.register_parameter(stem + suffix, nn.Parameter(torch.empty(shape, **factory)))
                    self._flat_weights_names.append(stem + suffix)
        self.reset_parameters()

    reset_parameters = reset_parameters

    def flatten_parameters(self):
        """A no-op (cuDNN's weight flattening has no meaning here); kept for drop-in use."""

    @property
    def all_weights(self):
        return [[getattr(self, n) for n in self._flat_weights_names[i:i + (4 if self.bias else 2)]]
                for i in range(0, len(self._flat_weights_names), 4 if self.bias else 2)]

    def _weights(self, layer, direction):
        i = (layer * (2 if self.bidirectional else 1) + direction) * (4 if self.bias else 2)
        w = [self._parameters[n] for n in self._flat_weights_names[i:i + (4 if self.bias else 2)]]
        return w if self.bias else w + [None, None]

    def _layer(self, x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reverse, need_cache):
        raise NotImplementedError

    def extra_repr(self):
        s = "{input_size}, {hidden_size}"
        if self.num_layers != 1:
            s += ", num_layers={num_layers}"
        s += self._extra_options()
        if self.bias is not True:
            s += ", bias={bias}"
        if self.batch_first is not False:
            s += ", batch_first={batch_first}"
        if self.dropout != 0:
            s += ", dropout={dropout}"
        if self.bidirectional is not False:
            s += ", bidirectional={bidirectional}"
        return s.format(**self.__dict__)

    def _extra_options(self):
        return ""

    def _torch_forward(self, input, hx, lengths):
        """torch's own implementation (a torch.nn twin sharing the parameters), for what the kernels
        do not cover."""
        if lengths is not None:
            raise ValueError("lengths: only on fastrnn's kernels (CPU float32/float64); pass a PackedSequence")
        if isinstance(self, GRU) and not self.reset_after:
            raise ValueError(f"reset_after=False: only on fastrnn's kernels (CPU float32/float64); the "
                             f"parameters are on {self.weight_ih_l0.device} with dtype {self.weight_ih_l0.dtype}")
        from .convert import to_torch_module
        return to_torch_module(self)(input, hx)

    def forward(self, input, hx=None, lengths=None):
        w0 = self.weight_ih_l0
        if not on_fast_path(self, w0):
            return self._torch_forward(input, hx, lengths)
        packed = isinstance(input, PackedSequence)
        if packed:
            if lengths is not None:
                raise ValueError("lengths: not allowed with a PackedSequence input (it carries its own)")
            check_tensor("input", input.data, w0)
            x, lengths = pad_packed_sequence(input, batch_first=False)   # original batch order
            batched = True
        else:
            check_tensor("input", input, w0)
            if input.dim() not in (2, 3):
                raise ArgumentError(f"input: expected a 2-D (unbatched) or 3-D (batched) tensor, got shape "
                                    f"{tuple(input.shape)}")
            batched = input.dim() == 3
            x = input if batched else input.unsqueeze(1)
            if batched and self.batch_first:
                x = x.transpose(0, 1)
        if x.shape[2] != self.input_size:
            raise ArgumentError(f"input: expected input_size={self.input_size} features, got {x.shape[2]}")
        T, B, _ = x.shape
        L, D, H = self.num_layers, 2 if self.bidirectional else 1, self.hidden_size
        if hx is not None:
            check_tensor("hx", hx, w0)
            if not batched:
                if hx.dim() != 2:
                    raise ArgumentError(f"hx: for unbatched input expected a 2-D tensor, got shape {tuple(hx.shape)}")
                hx = hx.unsqueeze(1)
            if tuple(hx.shape) != (L * D, B, H):
                raise ArgumentError(f"hx: expected shape {(L * D, B, H)}, got {tuple(hx.shape)}")
        if lengths is not None:
            lengths = torch.as_tensor(lengths)
            if lengths.device.type != "cpu":
                raise ArgumentError(f"lengths: expected a CPU tensor, got one on {lengths.device}")
            if tuple(lengths.shape) != (B,):
                raise ArgumentError(f"lengths: expected shape ({B},), got {tuple(lengths.shape)}")
            _ops.check_lengths_dtype(lengths)
            lengths = lengths.to(torch.int64)
        x = x.contiguous()
        need_cache = torch.is_grad_enabled() and (
            x.requires_grad or (hx is not None and hx.requires_grad) or
            any(self._parameters[n].requires_grad for n in self._flat_weights_names))

        h_n = []
        inp = x
        for layer in range(L):
            outs = []
            for direction in range(D):
                i = layer * D + direction
                out, hn = self._layer(inp, None if hx is None else hx[i], *self._weights(layer, direction),
                                      lengths, direction == 1, need_cache)
                outs.append(out)
                h_n.append(hn)
            inp = outs[0] if D == 1 else torch.cat(outs, dim=2)
            if self.dropout > 0 and self.training and layer < L - 1:
                inp = torch.nn.functional.dropout(inp, self.dropout, training=True)
        h_n = h_n[0].unsqueeze(0) if len(h_n) == 1 else torch.stack(h_n)   # (a view: a microsecond less)
        out = inp
        if packed:
            sorted_indices = input.sorted_indices
            if sorted_indices is not None:
                out = out.index_select(1, sorted_indices)
                lengths = lengths.index_select(0, sorted_indices.cpu())
            data = pack_padded_sequence(out, lengths, enforce_sorted=True).data
            return PackedSequence(data, input.batch_sizes, sorted_indices, input.unsorted_indices), h_n
        if not batched:
            return out.squeeze(1), h_n.squeeze(1)
        if self.batch_first:
            out = out.transpose(0, 1)
        return out, h_n


class GRU(_RNNBase):
    """torch.nn.GRU on fastrnn's kernels; reset_after=False (Cho et al. 2014) goes beyond torch."""

    _gates = 3

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, device=None, dtype=None, reset_after=True):
        self.reset_after = check("reset_after", reset_after)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         device, dtype)

    def _layer(self, x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reverse, need_cache):
        out, h_n, _, _ = _ops.gru(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, self.reset_after, reverse, need_cache)
        return out, h_n

    def _extra_options(self):
        return "" if self.reset_after else ", reset_after=False"


class RNN(_RNNBase):
    """torch.nn.RNN (Elman; tanh or relu) on fastrnn's kernels."""

    _gates = 1

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, device=None, dtype=None):
        self.nonlinearity = check("nonlinearity", nonlinearity)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         device, dtype)

    def _layer(self, x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reverse, need_cache):
        out, h_n, _ = _ops.rnn(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, self.nonlinearity, reverse, need_cache)
        return out, h_n

    def _extra_options(self):
        return "" if self.nonlinearity == "tanh" else ", nonlinearity={nonlinearity}"
