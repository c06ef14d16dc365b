"""The torch operators: one layer, one direction, on fastrnn's C kernels.

    out, h_n, states, gates = torch.ops.fastrnn.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths,
                                                            reset_after, reverse, need_cache)
    dx, dh0, dw_ih, dw_hh, db_ih, db_hh = torch.ops.fastrnn.gru_backward(d_out, d_hn, x, w_ih, w_hh,
                                                            states, gates, lengths, reset_after, reverse)
    out, h_n, states = torch.ops.fastrnn.rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths,
                                                     nonlinearity, reverse, need_cache)
    dx, dh0, dw_ih, dw_hh, db_ih, db_hh = torch.ops.fastrnn.rnn_backward(d_out, d_hn, x, w_ih, w_hh,
                                                            states, lengths, nonlinearity, reverse)

    gru(x, h0, w_ih, ..., need_cache) / rnn(...)   what the modules call: the same forward, with autograd

Shapes as in `fastrnn.functional`: x (T, B, I), h0 (B, H) or None, lengths (B,) integers or None;
a backward's d_out or d_hn None stands for zeros (the gradient of an output nobody used).

Why the forward returns the kernel's saved arrays. The C backward needs what its forward kept: the
T + 1 hidden states (B, H) and, for the GRU, the (T, B, 4H) gate values. A torch operator can only
hand tensors from its forward to its backward, so the forward operator returns those two arrays
as extra outputs (`torch.from_numpy`, no copy) and autograd saves them with x and the weights;
the backward operator rebuilds the C backend's cache from them and runs the C backward once. The
alternatives are worse: keeping the NumPy cache in a Python side table breaks fake tensors,
torch.compile and opcheck, and recomputing the forward inside the backward costs a whole forward per
training step. The price is that these operators are tied to the C backend's cache layout (checked
by the parity tests), so they always run on the "c" backend.

Two ways in, one implementation. Under torch.compile (and torch.export) the modules call the
registered operators (`custom_op` with `register_fake` and `register_autograd`), which Dynamo and
AOTAutograd trace. In eager mode the dispatcher's Python custom-op machinery costs 14-25 µs a call,
as much as a small cell's whole step, so `gru` / `rnn` call the same C forward and backward
directly, under a classic `torch.autograd.Function` (_eager) that returns only out and h_n and
keeps the C backend's cache on its context (its states / gates saved as tensors), so its backward
has no cache to rebuild (an RNN cell's training step at B = 1, H = 256: 3-5% less time than through
the operators' setup and formula). The cells' single steps take a leaner way still (_step.py), and
come here only under torch.compile or for tensors that must be converted. Double backward is
refused with a RuntimeError on both ways (the kernels have no second derivative).

Torch's autograd guards the saved tensors with its version counters (an in-place change of x or a
weight before backward is torch's usual RuntimeError), so these operators skip the fingerprints of
`fastrnn.functional`'s caches. With need_cache=False (inference: the module passes it when no
gradient is needed) the kernels keep nothing and `states` / `gates` are empty tensors; should a
backward still come (the op called directly), it runs the forward again keeping them (slow, correct).

Threads: the kernels run `fastrnn.set_num_threads`'s count when the user chose one (or
FASTRNN_NUM_THREADS), otherwise `torch.get_num_threads()` (at most the machine's CPUs), so a
torch program's thread setting (torch.set_num_threads, OMP_NUM_THREADS, torchrun's default of 1)
holds for the recurrent layers too.

Tensors go to NumPy as `tensor.numpy(force=True)` views (detached; 0.7 µs where `detach().numpy()`
took 1.0, six times a cell's step): nothing is copied for contiguous CPU float32/float64 tensors,
and results come back with `torch.from_numpy`. A parameter's view is kept from call to call
(param_view).
"""
import weakref

import numpy as np
import torch

from .. import _backends, _config
from .. import functional as F
from .._validation import NONLINEARITIES, option

__all__ = ["gru_forward", "gru_backward", "rnn_forward", "rnn_backward", "gru", "rnn"]

_DTYPES = (torch.float32, torch.float64)


def _np(name, t):
    """A CPU float32/float64 tensor as a NumPy view (no copy); TypeError/ValueError otherwise."""
    if t is None:
        return None
    if not t.is_cpu:                    # (t.device costs 0.3 us; six of these run at every cell step)
        raise ValueError(f"{name}: fastrnn.torch runs on the CPU only, got a tensor on {t.device}")
    if t.dtype not in _DTYPES:
        raise TypeError(f"{name}: expected a torch.float32 or torch.float64 tensor, got {t.dtype}")
    return t.numpy(force=True)


# id(parameter) -> (weakref to it, data_ptr, shape, dtype, its NumPy view); an entry leaves when its
# parameter is collected, so a view never outlives (nor keeps alive) the parameter's module
_VIEWS = {}


def _forget(key):
    return lambda _: _VIEWS.pop(key, None)


def param_view(t):
    """t.numpy(force=True) for a contiguous CPU float32/float64 tensor the caller has checked; for an
    nn.Parameter, the same view as at the last call while the parameter still has the storage address,
    shape and dtype it had then (`p.data = ...`, or a resize, makes a new view; in-place changes of its
    values show through the view). A view replaced that way holds the old storage until the next call
    with that parameter. On a Zen 4, 0.3 µs instead of numpy's 1.5: four per cell step."""
    if type(t) is not torch.nn.Parameter:
        return t.numpy(force=True)
    key = id(t)
    e = _VIEWS.get(key)
    if e is not None and e[0]() is t and e[1] == t.data_ptr() and e[2] == t.shape and e[3] is t.dtype:
        return e[4]
    v = t.numpy(force=True)
    _VIEWS[key] = (weakref.ref(t, _forget(key)), t.data_ptr(), t.shape, t.dtype, v)
    return v


def _lengths(lengths):
    """lengths as a NumPy view; fastrnn.functional's rules (and its private copy) follow."""
    if lengths is None:
        return None
    if lengths.device.type != "cpu":
        raise ValueError(f"lengths: expected a CPU tensor, got one on {lengths.device}")
    check_lengths_dtype(lengths)
    return lengths.detach().numpy()


def check_lengths_dtype(lengths):
    """An integer tensor: ValueError otherwise (SPEC §3, as fastrnn.functional)."""
    if lengths.dtype.is_floating_point or lengths.dtype.is_complex or lengths.dtype == torch.bool:
        raise ValueError(f"lengths: expected an integer tensor, got {lengths.dtype}")


def _c():
    return _backends.get("c")[1]       # ValueError naming the backend when the kernels are not built


_CPUS = _config.max_threads()      # read once: it cannot change, and each call costs ~2 µs


def _nthreads():
    n = _config.chosen_num_threads()
    return n if n is not None else min(torch.get_num_threads(), _CPUS)


def _t(a):
    return torch.from_numpy(a)


def _empty(like):
    return like.new_empty((0,))


def _prepare(G, x, h0, w_ih, w_hh, b_ih, b_hh, lengths):
    """fastrnn.functional's validation of one layer's inputs (its rules, its messages), skipped for
    the usual call that passes all of it (_plain)."""
    args = _plain(G, x, h0, w_ih, w_hh, b_ih, b_hh, lengths)
    if args is None:
        args, _, _, _ = F._prepare(G, _np("x", x), _np("h0", h0), _np("w_ih", w_ih), _np("w_hh", w_hh),
                                   _np("b_ih", b_ih), _np("b_hh", b_hh), _lengths(lengths))
    return args


_NUMPY_DTYPES = {torch.float32: np.dtype(np.float32), torch.float64: np.dtype(np.float64)}


def _plain(G, x, h0, w_ih, w_hh, b_ih, b_hh, lengths):
    """What F._prepare returns, without its checks, for a call that passes them all as it is: no
    lengths, every tensor given contiguous on the CPU with w_hh's dtype (float32 or float64) and of
    its shape for x's (T, B, I) and w_hh's (G·H, H), and both biases or neither. None for any other
    call, which F._prepare then converts, or refuses with its message. (At a cell's step, B = 1 and
    H = 256, whose kernel takes 16 µs, the conversions and F._prepare's checks took 14 µs, these 11;
    7 with numpy(force=True), 2026-12-02.)"""
    dtype = _NUMPY_DTYPES.get(w_hh.dtype)
    if dtype is None or lengths is not None or (b_ih is None) != (b_hh is None) or x.dim() != 3 or w_hh.dim() != 2:
        return None
    T, B, I = x.shape
    GH, H = w_hh.shape
    if GH != G * H:
        return None
    dt = w_hh.dtype
    for t, shape in ((x, None), (w_hh, None), (w_ih, (GH, I)), (h0, (B, H)), (b_ih, (GH,)), (b_hh, (GH,))):
        if t is not None and not (t.dtype is dt and t.is_cpu and t.is_contiguous() and
                                  (shape is None or t.shape == shape)):
            return None
    h0 = np.zeros((B, H), dtype) if h0 is None else h0.numpy(force=True)
    if b_ih is None:
        b_ih = b_hh = np.zeros(GH, dtype)
    else:
        b_ih, b_hh = param_view(b_ih), param_view(b_hh)
    return x.numpy(force=True), h0, param_view(w_ih), param_view(w_hh), b_ih, b_hh, None


def _backward_data(x, w_ih, w_hh, states, lengths, T, B, I, H, **extra):
    """The C backend's cache, rebuilt from the tensors autograd saved."""
    c = np.ascontiguousarray
    lengths = _lengths(lengths)
    return {"sizes": (T, B, I, H), "x": c(_np("x", x)), "states": c(_np("states", states)),
            "w_ih": c(_np("w_ih", w_ih)), "w_hh": c(_np("w_hh", w_hh)),
            "lengths": None if lengths is None else lengths.astype(np.int64), "use_blas": False, **extra}


def _run_backward(name, d_out, d_hn, data):
    """The C backend's backward `name` on its cache `data` (as the C forward made it, or rebuilt from
    saved tensors): dx, dh0, dw_ih, dw_hh, db_ih, db_hh.
    d_out or d_hn None (autograd's gradient of an output nobody used; a cell's out): zeros, made here
    in NumPy (a torch zeros tensor cost a cell's backward 13 us)."""
    c, dtype = np.ascontiguousarray, data["x"].dtype
    T, B, _, H = data["sizes"]
    d_out = np.zeros((T, B, H), dtype) if d_out is None else c(_np("d_out", d_out), dtype=dtype)
    d_hn = np.zeros((B, H), dtype) if d_hn is None else c(_np("d_hn", d_hn), dtype=dtype)
    return tuple(_t(a) for a in getattr(_c(), name)(d_out, d_hn, data, nthreads=_nthreads()))


def _input_grads(grads, has_h0, has_bias):
    """The backward's six gradients as autograd takes them for (x, h0, w_ih, w_hh, b_ih, b_hh): None
    for an h0 or biases the forward was not given."""
    dx, dh0, dw_ih, dw_hh, db_ih, db_hh = grads
    return (dx, dh0 if has_h0 else None, dw_ih, dw_hh, db_ih if has_bias else None,
            db_hh if has_bias else None)


def _fake_outputs(x, w_hh):
    """The fake tensors of out (T, B, H) and h_n (B, H), and T, B, H."""
    T, B, _ = x.shape
    H = w_hh.shape[1]
    return x.new_empty((T, B, H)), x.new_empty((B, H)), T, B, H


def _fake_grads(d_out, d_hn, x, w_ih, w_hh, *_):
    """The fake tensors of a backward's dx, dh0, dw_ih, dw_hh, db_ih, db_hh (from its first arguments)."""
    GH, H = w_hh.shape
    return (x.new_empty(x.shape), x.new_empty((x.shape[1], H)), w_ih.new_empty(w_ih.shape),
            w_hh.new_empty(w_hh.shape), w_hh.new_empty((GH,)), w_hh.new_empty((GH,)))


def _custom_ops(kind, forward, backward):
    """The operators fastrnn::<kind>_forward and fastrnn::<kind>_backward, the backward's fake
    registered (the forward's fake and the autograd formula follow each forward)."""
    ops = (torch.library.custom_op(f"fastrnn::{kind}_forward", forward, mutates_args=()),
           torch.library.custom_op(f"fastrnn::{kind}_backward", backward, mutates_args=()))
    ops[1].register_fake(_fake_grads)
    return ops


def _no_cache(name):
    return RuntimeError(f"fastrnn::{name}: the forward ran with need_cache=False and kept nothing for a backward")


# ---- GRU ---------------------------------------------------------------------------------------

def _gru_run(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reset_after, reverse, need_cache):
    """The C forward: out, h_n (tensors) and the NumPy cache (None without need_cache)."""
    args = _prepare(3, x, h0, w_ih, w_hh, b_ih, b_hh, lengths)
    out, h_n, data = _c().gru_forward(*args[:6], bool(reset_after), bool(reverse), args[6],
                                      need_cache=bool(need_cache), nthreads=_nthreads())
    return _t(out), _t(h_n), data


def _gru_forward(x: torch.Tensor, h0: torch.Tensor | None, w_ih: torch.Tensor, w_hh: torch.Tensor,
                 b_ih: torch.Tensor | None, b_hh: torch.Tensor | None, lengths: torch.Tensor | None,
                 reset_after: bool, reverse: bool, need_cache: bool
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    out, h_n, data = _gru_run(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reset_after, reverse, need_cache)
    if data is None:
        return out, h_n, _empty(x), _empty(x)
    return out, h_n, _t(data["states"]), _t(data["gates"])


def _gru_backward(d_out: torch.Tensor | None, d_hn: torch.Tensor | None, x: torch.Tensor, w_ih: torch.Tensor,
                  w_hh: torch.Tensor, states: torch.Tensor, gates: torch.Tensor,
                  lengths: torch.Tensor | None, reset_after: bool, reverse: bool
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    T, B, I = x.shape
    H = w_hh.shape[1]
    if states.shape != (T + 1, B, H) or gates.shape != (T, B, 4 * H):
        raise _no_cache("gru_backward")
    data = _backward_data(x, w_ih, w_hh, states, lengths, T, B, I, H, gates=np.ascontiguousarray(_np("gates", gates)),
                          reset_after=bool(reset_after), reverse=bool(reverse))
    return _run_backward("gru_backward", d_out, d_hn, data)


gru_forward, gru_backward = _custom_ops("gru", _gru_forward, _gru_backward)


@gru_forward.register_fake
def _(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reset_after, reverse, need_cache):
    out, h_n, T, B, H = _fake_outputs(x, w_hh)
    if not need_cache:
        return out, h_n, _empty(x), _empty(x)
    return out, h_n, x.new_empty((T + 1, B, H)), x.new_empty((T, B, 4 * H))


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
    grads = gru_backward(d_out, d_hn, x, w_ih, w_hh, states, gates, lengths, reset_after, reverse)
    return (*_input_grads(grads, has_h0, has_bias), None, None, None, None)


gru_forward.register_autograd(_gru_grad, setup_context=_gru_setup)


# ---- RNN ---------------------------------------------------------------------------------------

def _rnn_forward(x: torch.Tensor, h0: torch.Tensor | None, w_ih: torch.Tensor, w_hh: torch.Tensor,
                 b_ih: torch.Tensor | None, b_hh: torch.Tensor | None, lengths: torch.Tensor | None,
                 nonlinearity: str, reverse: bool, need_cache: bool
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    out, h_n, data = _rnn_run(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, nonlinearity, reverse, need_cache)
    return out, h_n, _empty(x) if data is None else _t(data["states"])


def _rnn_run(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, nonlinearity, reverse, need_cache):
    """The C forward: out, h_n (tensors) and the NumPy cache (None without need_cache)."""
    nonlinearity = option("nonlinearity", nonlinearity, NONLINEARITIES)
    args = _prepare(1, x, h0, w_ih, w_hh, b_ih, b_hh, lengths)
    out, h_n, data = _c().rnn_forward(*args[:6], nonlinearity, bool(reverse), args[6],
                                      need_cache=bool(need_cache), nthreads=_nthreads())
    return _t(out), _t(h_n), data


def _rnn_backward(d_out: torch.Tensor | None, d_hn: torch.Tensor | None, x: torch.Tensor, w_ih: torch.Tensor,
                  w_hh: torch.Tensor, states: torch.Tensor, lengths: torch.Tensor | None,
                  nonlinearity: str, reverse: bool
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    T, B, I = x.shape
    H = w_hh.shape[1]
    if states.shape != (T + 1, B, H):
        raise _no_cache("rnn_backward")
    nonlinearity = option("nonlinearity", nonlinearity, NONLINEARITIES)
    data = _backward_data(x, w_ih, w_hh, states, lengths, T, B, I, H, relu=nonlinearity == "relu",
                          reverse=bool(reverse))
    return _run_backward("rnn_backward", d_out, d_hn, data)


rnn_forward, rnn_backward = _custom_ops("rnn", _rnn_forward, _rnn_backward)


@rnn_forward.register_fake
def _(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, nonlinearity, reverse, need_cache):
    out, h_n, T, B, H = _fake_outputs(x, w_hh)
    return out, h_n, x.new_empty((T + 1, B, H)) if need_cache else _empty(x)


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
    grads = rnn_backward(d_out, d_hn, x, w_ih, w_hh, states, lengths, nonlinearity, reverse)
    return (*_input_grads(grads, has_h0, has_bias), None, None, None, None)


rnn_forward.register_autograd(_rnn_grad, setup_context=_rnn_setup)


# ---- what both share -----------------------------------------------------------------------------

_DOUBLE_BACKWARD = ("fastrnn::{}: double backward (a gradient of a gradient, create_graph=True) is not "
                    "supported by fastrnn.torch; use torch.nn.GRU / RNN for it")


def _double_backward(name):
    def grad(ctx, *grads):
        raise RuntimeError(_DOUBLE_BACKWARD.format(name))
    return grad


for _op in (gru_backward, rnn_backward):
    _op.register_autograd(_double_backward(_op._name), setup_context=lambda ctx, inputs, output: None)


class _Refuse(torch.autograd.Function):
    """Gradients computed with create_graph=True: copies whose own backward raises (what the
    registered autograd of the backward operators does on the compiled way)."""

    @staticmethod
    def forward(ctx, name, anchor, *grads):
        ctx.name = name
        return tuple(None if g is None else g.clone() for g in grads)

    @staticmethod
    def backward(ctx, *_):
        raise RuntimeError(_DOUBLE_BACKWARD.format(ctx.name))


def refused_twice(name, inputs, grads):
    """A backward's `grads`, or under create_graph=True (grad mode on inside the backward) the same
    values through _Refuse, anchored on one of `inputs` that requires grad, so that differentiating
    them again is the double-backward error of the backward operator `name`."""
    if torch.is_grad_enabled():
        anchor = next((t for t in inputs if t is not None and t.requires_grad), None)
        if anchor is not None:
            return _Refuse.apply(name, anchor, *grads)
    return grads


def _eager(name, run, kept):
    """A classic autograd.Function on the C forward `run` and the C backward `name`: the way of eager
    mode, cheaper a call than the operators' (a cell's step is tens of microseconds). It returns out
    and h_n only; the forward's cache stays on ctx as the C backend made it, its `kept` arrays
    (states, gates) saved as tensors (freed after the backward, as autograd frees what it saved),
    and the backward runs on it with no cache to rebuild. x, h0 and the parameters are saved too, so
    that an in-place change before the backward is torch's usual version error. Under
    create_graph=True its gradients come through _Refuse, so that differentiating them again is an
    error, not a silent zero."""

    class Function(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, lengths, option, reverse, _need_cache):
            out, h_n, cache = run(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, option, reverse, True)
            ctx.save_for_backward(x, h0, w_ih, w_hh, b_ih, b_hh, *(_t(cache.pop(k)) for k in kept))
            ctx.cache = cache
            # an unused output's gradient stays None (_run_backward makes zeros in NumPy)
            ctx.set_materialize_grads(False)
            return out, h_n

        @staticmethod
        def backward(ctx, d_out, d_hn):
            saved = ctx.saved_tensors
            cache = dict(ctx.cache, **{k: t.numpy() for k, t in zip(kept, saved[6:])})
            with torch.no_grad():
                grads = _run_backward(name, d_out, d_hn, cache)
            result = _input_grads(grads, saved[1] is not None, saved[4] is not None)
            return (*refused_twice(name, saved[:6], result), None, None, None, None)

    return Function


def apply_of(function):
    """function.apply without torch.autograd.Function.apply's Python layer where it does nothing.
    That layer binds default arguments (only for a Function with setup_context, which _eager's and
    _step's have not) and unwraps functorch's dead wrappers (only while a functorch transform is
    active, when this calls the full apply), then calls the C implementation of its base class, as
    this does directly. It costs 1.9 µs of a 5-7 µs apply (2026-12-02). A torch without that base
    class gets the full apply."""
    base = getattr(torch._C, "_FunctionBase", None)
    raw = base.__dict__.get("apply") if base is not None else None
    if raw is None or not hasattr(torch._C, "_are_functorch_transforms_active"):
        return function.apply
    raw = raw.__get__(None, function)
    active = torch._C._are_functorch_transforms_active

    def apply(*args):
        return function.apply(*args) if active() else raw(*args)
    return apply


def _caller(op, function, run, nsaved):
    """What the modules call: the operator under torch.compile; in eager mode the autograd.Function
    when autograd will need it (it keeps the cache whatever need_cache says), otherwise the C forward
    alone, keeping nothing; either way the `nsaved` saved outputs are None (no empty tensors made for
    nobody)."""
    apply = apply_of(function)

    def call(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, option, reverse, need_cache):
        args = (x, h0, w_ih, w_hh, b_ih, b_hh, lengths, option, reverse, need_cache)
        if torch.compiler.is_compiling():
            return op(*args)
        if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in args[:6]):
            return apply(*args) + (None,) * nsaved
        return run(*args[:9], False)[:2] + (None,) * nsaved
    return call


gru = _caller(gru_forward, _eager("gru_backward", _gru_run, ("states", "gates")), _gru_run, 2)
rnn = _caller(rnn_forward, _eager("rnn_backward", _rnn_run, ("states",)), _rnn_run, 1)
