"""The torch operators: one layer, one direction, on fastrnn's C kernels.

    out, h_n, states, gates = torch.ops.fastrnn.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths,
                                                            reset_after, reverse, need_cache)
    dx, dh0, dw_ih, dw_hh, db_ih, db_hh = torch.ops.fastrnn.gru_backward(d_out, d_hn, x, w_ih, w_hh,
                                                            states, gates, lengths, reset_after, reverse)
    out, h_n, states = torch.ops.fastrnn.rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths,
                                                     nonlinearity, reverse, need_cache)
    dx, dh0, dw_ih, dw_hh, db_ih, db_hh = torch.ops.fastrnn.rnn_backward(d_out, d_hn, x, w_ih, w_hh,
                                                            states, lengths, nonlinearity, reverse)

Shapes as in `fastrnn.functional`: x (T, B, I), h0 (B, H) or None, lengths (B,) integers or None.

Why the forward returns the kernel's saved arrays. The C backward needs what its forward kept: the
T + 1 hidden states (B, H) and, for the GRU, the (T, B, 4H) gate values. A torch operator can only
hand tensors from its forward to its backward, so the forward operator returns those two arrays
as extra outputs (`torch.from_numpy`, no copy) and autograd saves them with x and the weights;
the backward operator rebuilds the C backend's cache from them and runs the C backward once. The
alternatives are worse: keeping the NumPy cache in a Python side table breaks fake tensors,
torch.compile and opcheck, and recomputing the forward inside the backward costs a whole forward per
training step. The price is that these operators are tied to the C backend's cache layout (checked
by the parity tests), so they always run on the "c" backend.

Torch's autograd guards the saved tensors with its version counters (an in-place change of x or a
weight before backward is torch's usual RuntimeError), so the backward skips the fingerprint check
of `fastrnn.functional`'s caches. With need_cache=False (inference: the module passes it when no
gradient is needed) the kernels keep nothing and `states` / `gates` are empty tensors; should a
backward still come (the op called directly), it runs the forward again keeping them (slow, correct).

Tensors go to NumPy as `tensor.detach().numpy()` views: nothing is copied for contiguous CPU
float32/float64 tensors, and results come back with `torch.from_numpy`.
"""
import numpy as np
import torch

import fastrnn
from .. import _backends
from .. import functional as F

__all__ = ["gru_forward", "gru_backward", "rnn_forward", "rnn_backward"]

_DTYPES = (torch.float32, torch.float64)


def _np(name, t):
    """A CPU float32/float64 tensor as a NumPy view (no copy); TypeError/ValueError otherwise."""
    if t is None:
        return None
    if t.device.type != "cpu":
        raise ValueError(f"{name}: fastrnn.torch runs on the CPU only, got a tensor on {t.device}")
    if t.dtype not in _DTYPES:
        raise TypeError(f"{name}: expected a torch.float32 or torch.float64 tensor, got {t.dtype}")
    return t.detach().numpy()


def _lengths(lengths):
    if lengths is None:
        return None
    if lengths.device.type != "cpu":
        raise ValueError(f"lengths: expected a CPU tensor, got one on {lengths.device}")
    if lengths.dtype.is_floating_point or lengths.dtype.is_complex or lengths.dtype == torch.bool:
        raise TypeError(f"lengths: expected an integer tensor, got {lengths.dtype}")
    return lengths.detach().numpy().astype(np.int64)          # a private copy, as functional takes


def _c():
    return _backends.get("c")[1]       # ValueError naming the backend when the kernels are not built


def _t(a):
    return torch.from_numpy(a)


def _empty(like):
    return like.new_empty((0,))


# ---- GRU ---------------------------------------------------------------------------------------

@torch.library.custom_op("fastrnn::gru_forward", mutates_args=())
def gru_forward(x: torch.Tensor, h0: torch.Tensor | None, w_ih: torch.Tensor, w_hh: torch.Tensor,
                b_ih: torch.Tensor | None, b_hh: torch.Tensor | None, lengths: torch.Tensor | None,
                reset_after: bool, reverse: bool, need_cache: bool
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    with fastrnn.set_grad_enabled(need_cache):
        out, h_n, cache = F.gru_forward(_np("x", x), _np("h0", h0), _np("w_ih", w_ih), _np("w_hh", w_hh),
                                        _np("b_ih", b_ih), _np("b_hh", b_hh), reset_after=reset_after,
                                        reverse=reverse, lengths=_lengths(lengths), backend="c")
    if cache is None:
        return _t(out), _t(h_n), _empty(x), _empty(x)
    return _t(out), _t(h_n), _t(cache.data["states"]), _t(cache.data["gates"])


@gru_forward.register_fake
def _(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reset_after, reverse, need_cache):
    T, B, _ = x.shape
    H = w_hh.shape[1]
    if not need_cache:
        return x.new_empty((T, B, H)), x.new_empty((B, H)), _empty(x), _empty(x)
    return x.new_empty((T, B, H)), x.new_empty((B, H)), x.new_empty((T + 1, B, H)), x.new_empty((T, B, 4 * H))


@torch.library.custom_op("fastrnn::gru_backward", mutates_args=())
def gru_backward(d_out: torch.Tensor, d_hn: torch.Tensor, x: torch.Tensor, w_ih: torch.Tensor,
                 w_hh: torch.Tensor, states: torch.Tensor, gates: torch.Tensor,
                 lengths: torch.Tensor | None, reset_after: bool, reverse: bool
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    T, B, I = x.shape
    H = w_hh.shape[1]
    if states.shape != (T + 1, B, H) or gates.shape != (T, B, 4 * H):
        raise RuntimeError("fastrnn::gru_backward: the forward ran with need_cache=False and kept nothing "
                           "for a backward")
    c = np.ascontiguousarray
    data = {"sizes": (T, B, I, H), "x": c(_np("x", x)), "states": c(_np("states", states)),
            "gates": c(_np("gates", gates)), "w_ih": c(_np("w_ih", w_ih)), "w_hh": c(_np("w_hh", w_hh)),
            "lengths": _lengths(lengths), "reset_after": bool(reset_after), "reverse": bool(reverse),
            "use_blas": False}
    dtype = data["x"].dtype
    d_out = c(_np("d_out", d_out), dtype=dtype)
    d_hn = c(_np("d_hn", d_hn), dtype=dtype)
    return tuple(_t(a) for a in _c().gru_backward(d_out, d_hn, data))


@gru_backward.register_fake
def _(d_out, d_hn, x, w_ih, w_hh, states, gates, lengths, reset_after, reverse):
    GH = w_hh.shape[0]
    return (x.new_empty(x.shape), d_hn.new_empty(d_hn.shape), w_ih.new_empty(w_ih.shape),
            w_hh.new_empty(w_hh.shape), w_hh.new_empty((GH,)), w_hh.new_empty((GH,)))


# ---- RNN ---------------------------------------------------------------------------------------

@torch.library.custom_op("fastrnn::rnn_forward", mutates_args=())
def rnn_forward(x: torch.Tensor, h0: torch.Tensor | None, w_ih: torch.Tensor, w_hh: torch.Tensor,
                b_ih: torch.Tensor | None, b_hh: torch.Tensor | None, lengths: torch.Tensor | None,
                nonlinearity: str, reverse: bool, need_cache: bool
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    with fastrnn.set_grad_enabled(need_cache):
        out, h_n, cache = F.rnn_forward(_np("x", x), _np("h0", h0), _np("w_ih", w_ih), _np("w_hh", w_hh),
                                        _np("b_ih", b_ih), _np("b_hh", b_hh), nonlinearity=nonlinearity,
                                        reverse=reverse, lengths=_lengths(lengths), backend="c")
    if cache is None:
        return _t(out), _t(h_n), _empty(x)
    return _t(out), _t(h_n), _t(cache.data["states"])


@rnn_forward.register_fake
def _(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, nonlinearity, reverse, need_cache):
    T, B, _ = x.shape
    H = w_hh.shape[1]
    states = x.new_empty((T + 1, B, H)) if need_cache else _empty(x)
    return x.new_empty((T, B, H)), x.new_empty((B, H)), states


@torch.library.custom_op("fastrnn::rnn_backward", mutates_args=())
def rnn_backward(d_out: torch.Tensor, d_hn: torch.Tensor, x: torch.Tensor, w_ih: torch.Tensor,
                 w_hh: torch.Tensor, states: torch.Tensor, lengths: torch.Tensor | None,
                 nonlinearity: str, reverse: bool
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    T, B, I = x.shape
    H = w_hh.shape[1]
    if states.shape != (T + 1, B, H):
        raise RuntimeError("fastrnn::rnn_backward: the forward ran with need_cache=False and kept nothing "
                           "for a backward")
    c = np.ascontiguousarray
    data = {"sizes": (T, B, I, H), "x": c(_np("x", x)), "states": c(_np("states", states)),
            "w_ih": c(_np("w_ih", w_ih)), "w_hh": c(_np("w_hh", w_hh)), "lengths": _lengths(lengths),
            "relu": nonlinearity == "relu", "reverse": bool(reverse), "use_blas": False}
    dtype = data["x"].dtype
    d_out = c(_np("d_out", d_out), dtype=dtype)
    d_hn = c(_np("d_hn", d_hn), dtype=dtype)
    return tuple(_t(a) for a in _c().rnn_backward(d_out, d_hn, data))


@rnn_backward.register_fake
def _(d_out, d_hn, x, w_ih, w_hh, states, lengths, nonlinearity, reverse):
    H = w_hh.shape[0]
    return (x.new_empty(x.shape), d_hn.new_empty(d_hn.shape), w_ih.new_empty(w_ih.shape),
            w_hh.new_empty(w_hh.shape), w_hh.new_empty((H,)), w_hh.new_empty((H,)))


# ---- autograd ------------------------------------------------------------------------------------

def _grad_or_zeros(g, like):
    return torch.zeros_like(like) if g is None else g


def _gru_setup(ctx, inputs, output):
    x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reset_after, reverse, need_cache = inputs
    out, h_n, states, gates = output
    ctx.save_for_backward(x, h0, w_ih, w_hh, b_ih, b_hh, states, gates, lengths)
    ctx.flags = (reset_after, reverse, h0 is not None, b_ih is not None, need_cache)
    ctx.mark_non_differentiable(states, gates)


def _gru_grad(ctx, d_out, d_hn, _d_states, _d_gates):
    x, h0, w_ih, w_hh, b_ih, b_hh, states, gates, lengths = ctx.saved_tensors
    reset_after, reverse, has_h0, has_bias, need_cache = ctx.flags
    if not need_cache:      # slow path: the forward was told to keep nothing; run it again keeping it
        _, _, states, gates = gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reset_after, reverse, True)
    T, B, _ = x.shape
    H = w_hh.shape[1]
    d_out = _grad_or_zeros(d_out, x.new_empty((T, B, H)))
    d_hn = _grad_or_zeros(d_hn, x.new_empty((B, H)))
    dx, dh0, dw_ih, dw_hh, db_ih, db_hh = gru_backward(d_out, d_hn, x, w_ih, w_hh, states, gates, lengths,
                                                       reset_after, reverse)
    return (dx, dh0 if has_h0 else None, dw_ih, dw_hh, db_ih if has_bias else None,
            db_hh if has_bias else None, None, None, None, None)


gru_forward.register_autograd(_gru_grad, setup_context=_gru_setup)


def _rnn_setup(ctx, inputs, output):
    x, h0, w_ih, w_hh, b_ih, b_hh, lengths, nonlinearity, reverse, need_cache = inputs
    out, h_n, states = output
    ctx.save_for_backward(x, h0, w_ih, w_hh, b_ih, b_hh, states, lengths)
    ctx.flags = (nonlinearity, reverse, h0 is not None, b_ih is not None, need_cache)
    ctx.mark_non_differentiable(states)


def _rnn_grad(ctx, d_out, d_hn, _d_states):
    x, h0, w_ih, w_hh, b_ih, b_hh, states, lengths = ctx.saved_tensors
    nonlinearity, reverse, has_h0, has_bias, need_cache = ctx.flags
    if not need_cache:      # slow path: the forward was told to keep nothing; run it again keeping it
        _, _, states = rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, nonlinearity, reverse, True)
    T, B, _ = x.shape
    H = w_hh.shape[1]
    d_out = _grad_or_zeros(d_out, x.new_empty((T, B, H)))
    d_hn = _grad_or_zeros(d_hn, x.new_empty((B, H)))
    dx, dh0, dw_ih, dw_hh, db_ih, db_hh = rnn_backward(d_out, d_hn, x, w_ih, w_hh, states, lengths,
                                                       nonlinearity, reverse)
    return (dx, dh0 if has_h0 else None, dw_ih, dw_hh, db_ih if has_bias else None,
            db_hh if has_bias else None, None, None, None, None)


rnn_forward.register_autograd(_rnn_grad, setup_context=_rnn_setup)
