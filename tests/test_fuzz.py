"""Fuzz (hypothesis) of the functional kernels and the layers against the NumPy reference (SPEC §3, §5).

Every compiled backend (fastrnn.backends() but "numpy") is run on random small problems — empty sizes
(T = 0, B = 0, I = 0), every option (tanh/relu, reset_after, reverse, lengths with zeros or full,
h0 and bias given or None), float32/float64, awkward layouts (Fortran-ordered, strided, negative
strides, read-only) and NaN/Inf injected into some inputs — and must agree with backend="numpy":

- same shape and dtype of every output and gradient;
- the same NaN / +Inf / -Inf positions, exactly;
- on the entries finite in both, SPEC §5's tolerance (float64 1e-10, float32 1e-4 relative);
- inputs never modified (the caller's `lengths` may even be overwritten between the forward and its
  backward: the cache owns a copy).

Reproducible: derandomized, no example database. FASTRNN_FUZZ_EXAMPLES scales the number of examples
of each test (default 1 = the normal run, about 10 s; CI's sanitizer job runs 3, about 40 s);
FASTRNN_FUZZ_SHRINK=0 skips shrinking (a failure then reports the first failing example as found)."""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, assume, given, note, settings
from hypothesis import strategies as st

import fastrnn
from fastrnn import functional as F
from conftest import COMPILED, RESULT_NAMES, make_problem, make_upstream, tolerance

pytestmark = pytest.mark.skipif(not COMPILED, reason="no compiled backend built")

_SCALE = float(os.environ.get("FASTRNN_FUZZ_EXAMPLES", "1"))
_PHASES = [Phase.explicit, Phase.generate] + ([] if os.environ.get("FASTRNN_FUZZ_SHRINK", "1") == "0"
                                               else [Phase.shrink])


def _settings(n):
    return settings(max_examples=max(1, int(round(n * _SCALE))), deadline=None, derandomize=True,
                    database=None, phases=_PHASES, print_blob=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


# ---- comparison --------------------------------------------------------------------------------

def _pattern(a):
    return np.isnan(a), np.isposinf(a), np.isneginf(a)


def compare(got, ref, dtype, name):
    """Shape, dtype, NaN/±Inf positions equal; finite entries within tolerance(dtype) (relative norm)."""
    if ref is None or got is None:
        assert got is None and ref is None, f"{name}: {got!r} vs reference {ref!r}"
        return
    got, ref = np.asarray(got), np.asarray(ref)
    assert got.shape == ref.shape, f"{name}: shape {got.shape} != reference {ref.shape}"
    assert got.dtype == ref.dtype == np.dtype(dtype), f"{name}: dtype {got.dtype}, reference {ref.dtype}"
    for what, g, r in zip(("NaN", "+Inf", "-Inf"), _pattern(got), _pattern(ref)):
        if not np.array_equal(g, r):
            where = np.argwhere(g != r)[:5].tolist()
            raise AssertionError(f"{name}: {what} positions differ from the reference ({int(g.sum())} vs "
                                 f"{int(r.sum())}); first differing indices {where}: got "
                                 f"{[got[tuple(i)] for i in where]}, reference {[ref[tuple(i)] for i in where]}")
    fin = np.isfinite(ref)
    a, b = got[fin].astype(np.float64), ref[fin].astype(np.float64)
    diff, norm = np.linalg.norm(a - b), np.linalg.norm(b)
    err = diff / norm if norm > 0 else diff
    assert err <= tolerance(dtype), f"{name}: relative error {err:.3e} > {tolerance(dtype):.0e} (finite entries)"


def snapshot(arrays):
    return {k: (None if v is None else np.array(v, copy=True)) for k, v in arrays.items()}


def assert_unchanged(arrays, before, when):
    for k, v in arrays.items():
        if v is None:
            continue
        assert np.array_equal(np.asarray(v), before[k], equal_nan=True), f"input {k} modified by {when}"


# ---- strategies --------------------------------------------------------------------------------

LAYOUTS = ("c", "fortran", "strided", "negative", "readonly", "strided-readonly")


def relayout(a, layout):
    """The same values as `a` in another memory layout (a new array; `a` itself is left alone)."""
    if a is None:
        return None
    if layout == "c":
        return a.copy()
    if layout == "fortran":
        return np.asfortranarray(a)
    if layout in ("strided", "strided-readonly"):
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1] + 1,), a.dtype) if a.ndim else a.copy()
        big[..., 1::2] = a
        out = big[..., 1::2]
        if layout == "strided-readonly":
            out.flags.writeable = False
        return out
    if layout == "negative":
        return a[(slice(None, None, -1),) * a.ndim].copy()[(slice(None, None, -1),) * a.ndim]
    if layout == "readonly":
        out = a.copy()
        out.flags.writeable = False
        return out
    raise ValueError(layout)


SPECIALS = (np.nan, np.inf, -np.inf)


@st.composite
def injections(draw, shapes):
    """Up to 3 (name, index, value), value NaN / +Inf / -Inf, into the arrays of `shapes` (name ->
    shape or None) that are not empty; the index is taken modulo the array's size."""
    names = [k for k, s in shapes.items() if s is not None and int(np.prod(s))]
    if not names or not draw(st.integers(0, 2)):      # a third of the examples stay finite
        return []
    return [(draw(st.sampled_from(names)), draw(st.integers(0, 2**16)), draw(st.sampled_from(SPECIALS)))
            for _ in range(draw(st.integers(1, 3)))]


def inject(arrays, hits):
    """Copies of `arrays` with the injections of `hits` written in."""
    arrays = {k: (None if v is None else v.copy()) for k, v in arrays.items()}
    for name, idx, value in hits:
        a = arrays[name]
        if a is not None and a.size:
            a.reshape(-1)[idx % a.size] = value
    return arrays


@st.composite
def lengths_for(draw, T, B):
    mode = draw(st.sampled_from(["none", "random", "full", "zeros", "random"]))
    if mode == "none":
        return None, mode
    if mode == "full":
        vals = [T] * B
    elif mode == "zeros":
        vals = [0] * B
    else:
        vals = draw(st.lists(st.integers(0, T), min_size=B, max_size=B))
    dt = draw(st.sampled_from([np.int64, np.int32, np.intp]))
    arr = np.array(vals, dtype=dt)
    if draw(st.booleans()):
        arr = relayout(arr, draw(st.sampled_from(["strided", "readonly"])))
    return arr, mode


def relu_margin(kind, opts, p, reverse, lengths):
    """Smallest |pre-activation| (finite ones) of a relu RNN's active steps; inf for other kernels.
    Near 0 is relu's kink, where rounding can legitimately flip the derivative."""
    if kind != "rnn" or opts.get("nonlinearity") != "relu":
        return np.inf
    with np.errstate(all="ignore"):
        _, _, cache = F.rnn_forward(p["x"], p["h0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"],
                                    nonlinearity="relu", reverse=reverse, lengths=lengths, backend="numpy")
    pre = np.abs(cache.data["pre"][cache.data["active"]])
    pre = pre[np.isfinite(pre)]
    return pre.min() if pre.size else np.inf


def _margin_ok(margin, dtype):
    return margin > (1e-3 if np.dtype(dtype) == np.float32 else 1e-8)


# ---- the functional API ------------------------------------------------------------------------

KINDS = [("rnn", {"nonlinearity": "tanh"}), ("rnn", {"nonlinearity": "relu"}),
         ("gru", {"reset_after": True}), ("gru", {"reset_after": False})]
KIND_IDS = ["rnn-tanh", "rnn-relu", "gru-reset_after", "gru-reset_before"]


@st.composite
def sizes(draw, min_I=0):
    """T, B, I, H: mostly tiny (empty sizes included), a quarter of them past a vector's width and
    the kernels' blocking (remainder paths, several threads' slices)."""
    if draw(st.integers(0, 3)):
        return draw(st.integers(0, 5)), draw(st.integers(0, 4)), draw(st.integers(min_I, 4)), draw(st.integers(1, 5))
    return draw(st.integers(0, 6)), draw(st.integers(0, 9)), draw(st.integers(min_I, 33)), draw(st.integers(1, 37))


@st.composite
def functional_cases(draw):
    T, B, I, H = draw(sizes())
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    case = dict(T=T, B=B, I=I, H=H, dtype=np.dtype(dtype).name, reverse=draw(st.booleans()),
                h0=draw(st.booleans()), bias=draw(st.booleans()), seed=draw(st.integers(0, 2**20)),
                d_hn=draw(st.sampled_from(["given", "none"])))
    case["lengths"], case["lengths_mode"] = draw(lengths_for(T, B))
    case["clobber_lengths"] = case["lengths"] is not None and B > 0 and draw(st.booleans())
    names = ("x", "h0", "w_ih", "w_hh", "b_ih", "b_hh", "d_out", "d_hn")
    case["layouts"] = {k: draw(st.sampled_from(LAYOUTS)) for k in names}
    shapes = {"x": (T, B, I), "h0": (B, H) if case["h0"] else None, "w_ih": (H, I), "w_hh": (H, H),
              "b_ih": (H,) if case["bias"] else None, "b_hh": (H,) if case["bias"] else None,
              "d_out": (T, B, H), "d_hn": (B, H) if case["d_hn"] == "given" else None}
    case["inject"] = draw(injections(shapes))
    return case


def _functional_inputs(kind, case):
    c = case
    p = make_problem(kind, c["T"], c["B"], c["I"], c["H"], np.dtype(c["dtype"]), c["seed"], c["h0"], c["bias"])
    d_out, d_hn = make_upstream(c["T"], c["B"], c["H"], np.dtype(c["dtype"]), c["seed"] + 1)
    return inject(dict(p, d_out=d_out, d_hn=d_hn if c["d_hn"] == "given" else None), c["inject"])


def _forward_backward(kind, opts, a, backend, reverse, lengths, clobber=False):
    fwd = F.rnn_forward if kind == "rnn" else F.gru_forward
    bwd = F.rnn_backward if kind == "rnn" else F.gru_backward
    out, h_n, cache = fwd(a["x"], a["h0"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"], reverse=reverse,
                          lengths=lengths, backend=backend, **opts)
    saved = None
    if clobber:       # the caller reuses its lengths buffer before the backward: the cache owns a copy
        saved = lengths.copy()
        lengths[...] = np.asarray(lengths)[::-1] if lengths.size > 1 else 0
        if np.array_equal(lengths, saved):
            lengths[...] = (np.asarray(saved) + 1) % 2
    grads = bwd(a["d_out"], a["d_hn"], cache)
    if saved is not None:
        lengths[...] = saved
    return dict(zip(RESULT_NAMES, (out, h_n) + tuple(grads)))


@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("kind,opts", KINDS, ids=KIND_IDS)
@_settings(400)
@given(case=functional_cases())
def test_functional_fuzz(backend, kind, opts, case):
    c = case
    note(f"{kind} {opts} backend={backend} case={ {k: v for k, v in c.items() if k != 'lengths'} } "
         f"lengths={None if c['lengths'] is None else c['lengths'].tolist()}")
    base = _functional_inputs(kind, c)
    lengths0 = None if c["lengths"] is None else np.array(c["lengths"])
    # a pre-activation on relu's kink: either derivative is right
    assume(_margin_ok(relu_margin(kind, opts, base, c["reverse"], lengths0), c["dtype"]))
    with np.errstate(all="ignore"):
        ref = _forward_backward(kind, opts, base, "numpy", c["reverse"], lengths0)

    a = {k: relayout(v, c["layouts"][k]) for k, v in base.items()}
    lengths = c["lengths"]          # restored after a clobber
    clobber = c["clobber_lengths"] and lengths is not None and lengths.flags.writeable
    before = snapshot(dict(a, lengths=lengths))
    got = _forward_backward(kind, opts, a, backend, c["reverse"], lengths, clobber=clobber)
    assert_unchanged(dict(a, lengths=lengths), before, f"{backend} {kind} forward/backward")
    for name in RESULT_NAMES:
        compare(got[name], ref[name], c["dtype"], f"{backend} {kind} {name}")


# ---- the layers --------------------------------------------------------------------------------

@st.composite
def layer_cases(draw):
    T, B, I, H = draw(sizes(min_I=1))
    case = dict(kind=draw(st.sampled_from(["gru", "rnn"])), T=T, B=B, I=I, H=H,
                num_layers=draw(st.integers(1, 2)), bidirectional=draw(st.booleans()),
                bias=draw(st.booleans()), batch_first=draw(st.booleans()),
                dtype=draw(st.sampled_from(["float32", "float64"])), seed=draw(st.integers(0, 2**20)),
                nonlinearity=draw(st.sampled_from(["tanh", "relu"])), reset_after=draw(st.booleans()),
                h0=draw(st.booleans()), d_hn=draw(st.booleans()), repeat=draw(st.integers(1, 2)))
    case["lengths"], case["lengths_mode"] = draw(lengths_for(T, B))
    names = ("x", "h0", "d_out", "d_hn")
    case["layouts"] = {k: draw(st.sampled_from(LAYOUTS)) for k in names}
    D, L = 2 if case["bidirectional"] else 1, case["num_layers"]
    xs = (B, T, I) if case["batch_first"] else (T, B, I)
    os_ = (B, T, D * H) if case["batch_first"] else (T, B, D * H)
    shapes = {"x": xs, "h0": (L * D, B, H) if case["h0"] else None, "d_out": os_,
              "d_hn": (L * D, B, H) if case["d_hn"] else None}
    case["inject"] = draw(injections(shapes))
    # and into the parameters (by position in parameters(); the index modulo the array's size)
    case["inject_params"] = ([] if draw(st.integers(0, 3)) else
                             [(draw(st.integers(0, 15)), draw(st.integers(0, 2**16)), draw(st.sampled_from(SPECIALS)))])
    return case


def _make_layer(c, backend):
    dtype = np.dtype(c["dtype"])
    common = dict(num_layers=c["num_layers"], bias=c["bias"], batch_first=c["batch_first"],
                  bidirectional=c["bidirectional"], dtype=dtype, seed=c["seed"], backend=backend)
    if c["kind"] == "gru":
        layer = fastrnn.GRU(c["I"], c["H"], reset_after=c["reset_after"], **common)
    else:
        layer = fastrnn.RNN(c["I"], c["H"], nonlinearity=c["nonlinearity"], **common)
    params = list(layer.parameters().values())
    for k, idx, value in c.get("inject_params", []):
        p = params[k % len(params)]
        p.reshape(-1)[idx % p.size] = value
    return layer


def _layer_inputs(c):
    rng = np.random.default_rng(c["seed"] + 7)
    dtype = np.dtype(c["dtype"])
    T, B, I, H = c["T"], c["B"], c["I"], c["H"]
    D, L = 2 if c["bidirectional"] else 1, c["num_layers"]
    xs = (B, T, I) if c["batch_first"] else (T, B, I)
    os_ = (B, T, D * H) if c["batch_first"] else (T, B, D * H)
    arrays = {"x": rng.standard_normal(xs).astype(dtype),
              "h0": rng.standard_normal((L * D, B, H)).astype(dtype) if c["h0"] else None,
              "d_out": rng.standard_normal(os_).astype(dtype),
              "d_hn": rng.standard_normal((L * D, B, H)).astype(dtype) if c["d_hn"] else None}
    return inject(arrays, c["inject"])


def _run_layer(layer, a, lengths, repeat):
    res = []
    for _ in range(repeat):       # a second forward + backward: grads accumulate
        out, h_n = layer(a["x"], a["h0"], lengths=lengths)
        dx, dh0 = layer.backward(a["d_out"], a["d_hn"])
        res.append({"out": out, "h_n": h_n, "dx": dx, "dh0": dh0})
    return res, {k: v.copy() for k, v in layer.grads.items()}


def _layer_margin_ok(c, base, lengths):
    """Each relu layer's pre-activations away from the kink (first layer exactly; deeper layers and
    the reverse direction through the reference layer's own caches)."""
    if c["kind"] != "rnn" or c["nonlinearity"] != "relu":
        return True
    ref = _make_layer(c, "numpy")
    with np.errstate(all="ignore"):
        ref(base["x"], base["h0"], lengths=lengths)
    for cache in ref._ctx["caches"] if isinstance(ref._ctx, dict) else []:
        pre = np.abs(cache.data["pre"][cache.data["active"]])
        pre = pre[np.isfinite(pre)]
        if pre.size and not _margin_ok(pre.min(), c["dtype"]):
            return False
    return True


@pytest.mark.parametrize("backend", COMPILED)
@_settings(300)
@given(case=layer_cases())
def test_layer_fuzz(backend, case):
    c = case
    note(f"backend={backend} case={ {k: v for k, v in c.items() if k != 'lengths'} } "
         f"lengths={None if c['lengths'] is None else c['lengths'].tolist()}")
    base = _layer_inputs(c)
    lengths = c["lengths"]
    assume(_layer_margin_ok(c, base, lengths))
    ref_layer = _make_layer(c, "numpy")
    with np.errstate(all="ignore"):
        ref, ref_grads = _run_layer(ref_layer, base, lengths, c["repeat"])

    layer = _make_layer(c, backend)
    params_before = snapshot(layer.parameters())
    a = {k: relayout(v, c["layouts"][k]) for k, v in base.items()}
    before = snapshot(dict(a, lengths=lengths))
    with np.errstate(all="ignore"):      # the layers' own NumPy (adding directions) meets the NaN/Inf
        got, got_grads = _run_layer(layer, a, lengths, c["repeat"])
    assert_unchanged(dict(a, lengths=lengths), before, f"{backend} layer forward/backward")
    assert_unchanged(layer.parameters(), params_before, f"{backend} layer forward/backward (parameters)")
    for i, (g, r) in enumerate(zip(got, ref)):
        for name in ("out", "h_n", "dx", "dh0"):
            compare(g[name], r[name], c["dtype"], f"{backend} layer call {i} {name}")
    assert list(got_grads) == list(ref_grads)
    for name in ref_grads:
        compare(got_grads[name], ref_grads[name], c["dtype"], f"{backend} layer grads[{name!r}]")
