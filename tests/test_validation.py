"""SPEC §3 through fastrnn.functional, for both kernels and every backend in fastrnn.backends():
the inputs it must refuse (ValueError naming the argument, TypeError for bad dtypes) and the ones it
must accept (non-contiguous, Fortran-ordered, strided, read-only, empty, NaN/Inf) without modifying
them."""
import numpy as np
import pytest

from conftest import (BACKENDS, KERNEL_IDS, KERNELS, assert_close, backward_fn, forward_fn,
                      make_problem, make_upstream, run, tolerance)

T, B, I, H = 4, 3, 5, 6

pytestmark = pytest.mark.parametrize("backend", BACKENDS)
kernels = pytest.mark.parametrize("kind,opts", KERNELS, ids=KERNEL_IDS)


def call(kind, opts, backend, p, **kw):
    """forward_fn(kind) on the problem dict `p` (entries overridden by **kw) with the backend."""
    args = {**p, **{k: v for k, v in kw.items() if k in p}}
    options = {**opts, **{k: v for k, v in kw.items() if k not in p}}
    return forward_fn(kind)(args["x"], args["h0"], args["w_ih"], args["w_hh"], args["b_ih"],
                            args["b_hh"], backend=backend, **options)


def G(kind):
    return 3 if kind == "gru" else 1


# ---- ValueError: shapes, lengths, options --------------------------------------------------------

def bad_shapes(kind):
    """(argument name, bad value) pairs; every one must give a ValueError naming the argument."""
    g = G(kind)
    r = np.random.default_rng(0).standard_normal
    return [
        ("x", r((T, B))),                      # 2-D
        ("x", r((T, B, I, 1))),                # 4-D
        ("w_ih", r((g * H, I + 1))),           # input size differs from x
        ("w_ih", r((g * H + 1, I))),           # rows differ from G*H
        ("w_ih", r((g * H * I,))),             # 1-D
        ("w_hh", r((g * H, H + 1))),           # not (G*H, H)
        ("w_hh", r((g * H + 1, H))),
        ("w_hh", r((g * H,))),
        ("h0", r((B + 1, H))),
        ("h0", r((B, H + 1))),
        ("h0", r((1, B, H))),
        ("b_ih", r((g * H + 1,))),
        ("b_ih", r((1, g * H))),
        ("b_hh", r((g * H - 1,))),
        ("b_hh", r((g * H, 1))),
    ]


@kernels
def test_bad_shapes_raise_value_error_naming_the_argument(kind, opts, backend):
    p = make_problem(kind, T, B, I, H)
    for name, value in bad_shapes(kind):
        with pytest.raises(ValueError, match=name) as info:
            call(kind, opts, backend, p, **{name: value})
        assert str(value.shape) in str(info.value), "the message shows the actual shape"


@kernels
def test_one_bias_without_the_other(kind, opts, backend):
    p = make_problem(kind, T, B, I, H)
    with pytest.raises(ValueError, match="b_ih|b_hh"):
        call(kind, opts, backend, p, b_hh=None)
    with pytest.raises(ValueError, match="b_ih|b_hh"):
        call(kind, opts, backend, p, b_ih=None)


BAD_LENGTHS = {
    "too-long": np.array([1, 2, 3, 4]),
    "too-short": np.array([1, 2]),
    "2-D": np.array([[1], [2], [3]]),
    "scalar": np.array(2),
    "float": np.array([1.0, 2.0, 3.0]),
    "bool": np.array([True, False, True]),
    "negative": np.array([1, -1, 2]),
    "beyond-T": np.array([1, T + 1, 2]),
    "strings": np.array(["1", "2", "3"]),
}


@kernels
@pytest.mark.parametrize("lengths", BAD_LENGTHS.values(), ids=BAD_LENGTHS.keys())
def test_bad_lengths(kind, opts, backend, lengths):
    p = make_problem(kind, T, B, I, H)
    with pytest.raises(ValueError, match="lengths"):
        call(kind, opts, backend, p, lengths=lengths)


@kernels
def test_unknown_option_values(kind, opts, backend):
    p = make_problem(kind, T, B, I, H)
    if kind == "rnn":
        for bad in ("sigmoid", "TANH", None, 1):
            with pytest.raises(ValueError, match="nonlinearity"):
                call(kind, opts, backend, p, nonlinearity=bad)
    else:
        for bad in ("yes", None, 2):
            with pytest.raises(ValueError, match="reset_after"):
                call(kind, opts, backend, p, reset_after=bad)
    for bad in ("yes", None, 2):
        with pytest.raises(ValueError, match="reverse"):
            call(kind, opts, backend, p, reverse=bad)
    with pytest.raises(ValueError, match="backend"):
        call(kind, opts, "nope", p)


# ---- TypeError: dtypes ---------------------------------------------------------------------------

def bad_dtypes(p):
    x = p["x"]
    return [
        ("x", x.astype(np.complex128)),
        ("x", x.astype(object)),
        ("x", x.astype(str)),
        ("x", x.astype(np.float32)),             # weights are float64
        ("w_hh", p["w_hh"].astype(np.complex64)),
        ("w_ih", p["w_ih"].astype(np.float32)),
        ("h0", p["h0"].astype(np.float32)),
        ("h0", p["h0"].astype(np.complex128)),
        ("b_ih", p["b_ih"].astype(np.float32)),
        ("b_hh", p["b_hh"].astype(object)),
    ]


@kernels
def test_bad_dtypes_raise_type_error(kind, opts, backend):
    p = make_problem(kind, T, B, I, H)
    for name, value in bad_dtypes(p):
        with pytest.raises(TypeError, match=name):
            call(kind, opts, backend, p, **{name: value})


@kernels
def test_float32_weights_refuse_float64_input(kind, opts, backend):
    p = make_problem(kind, T, B, I, H, dtype=np.float32)
    with pytest.raises(TypeError, match="x"):
        call(kind, opts, backend, p, x=p["x"].astype(np.float64))


# ---- backward refusals ---------------------------------------------------------------------------

@kernels
def test_backward_refusals(kind, opts, backend):
    p = make_problem(kind, T, B, I, H)
    out, _, cache = call(kind, opts, backend, p)
    d_out, d_hn = make_upstream(T, B, H)
    bwd = backward_fn(kind)
    for bad in (d_out[:, :, :-1], d_out[:-1], d_out[0], d_out[..., None]):
        with pytest.raises(ValueError, match="d_out"):
            bwd(bad, d_hn, cache)
    for bad in (d_out.astype(np.float32), d_out.astype(np.complex128), d_out.astype(object)):
        with pytest.raises(TypeError, match="d_out"):
            bwd(bad, d_hn, cache)
    with pytest.raises(TypeError, match="d_out: expected a float32 or float64 array, got None"):
        bwd(None, d_hn, cache)    # (d_hn=None means zeros; d_out is required, SPEC §2)
    for bad in (d_hn[:-1], d_hn[None]):
        with pytest.raises(ValueError, match="d_hn"):
            bwd(d_out, bad, cache)
    with pytest.raises(TypeError, match="d_hn"):
        bwd(d_out, d_hn.astype(np.float32), cache)
    with pytest.raises(TypeError, match="cache"):
        bwd(d_out, d_hn, {"not": "a cache"})
    other = backward_fn("gru" if kind == "rnn" else "rnn")
    with pytest.raises(ValueError, match="cache"):
        other(d_out, d_hn, cache)
    # The refusals left the cache usable.
    grads = bwd(d_out, d_hn, cache)
    assert grads[0].shape == (T, B, I)


# ---- accepted inputs -----------------------------------------------------------------------------

def awkward_layouts(p):
    """The same values as `p`, in non-contiguous, Fortran-ordered, strided and read-only arrays."""
    def strided(a):
        big = np.zeros(tuple(2 * s for s in a.shape), a.dtype)
        view = big[tuple(slice(None, None, 2) for _ in a.shape)]
        view[...] = a
        return view

    def readonly(a):
        a = a.copy()
        a.flags.writeable = False
        return a

    q = {
        "x": strided(p["x"]),
        "h0": np.asfortranarray(p["h0"]),
        "w_ih": np.asfortranarray(p["w_ih"]),
        "w_hh": readonly(p["w_hh"]),
        "b_ih": strided(p["b_ih"]),
        "b_hh": readonly(p["b_hh"]),
    }
    assert not q["x"].flags.c_contiguous and not q["w_ih"].flags.c_contiguous
    return q


@kernels
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_awkward_layouts_give_the_same_results(kind, opts, backend, dtype):
    p = make_problem(kind, T, B, I, H, dtype=dtype, seed=2)
    lengths = np.array([4, 0, 2])
    d_out, d_hn = make_upstream(T, B, H, dtype=dtype)
    ref = run(kind, opts, p, backend, reverse=True, lengths=lengths, d_out=d_out, d_hn=d_hn)
    q = awkward_layouts(p)
    d_out_f, d_hn_f = np.asfortranarray(d_out), d_hn.copy()
    d_hn_f.flags.writeable = False
    lengths_ro = lengths[::-1].copy()[::-1]              # negative stride
    lengths_ro.flags.writeable = False
    res = run(kind, opts, q, backend, reverse=True, lengths=lengths_ro, d_out=d_out_f, d_hn=d_hn_f)
    for name in ("out", "h_n", "dx", "dh0", "dw_ih", "dw_hh", "db_ih", "db_hh"):
        assert_close(res[name], ref[name], dtype, name)


@kernels
def test_lengths_as_list_or_int32(kind, opts, backend):
    p = make_problem(kind, T, B, I, H, seed=3)
    ref = run(kind, opts, p, backend, lengths=np.array([3, 1, 4], dtype=np.int64))
    for lengths in ([3, 1, 4], np.array([3, 1, 4], dtype=np.int32), np.array([3, 1, 4], np.uint8)):
        res = run(kind, opts, p, backend, lengths=lengths)
        for name in ("out", "h_n", "dx", "dw_hh"):
            assert_close(res[name], ref[name], np.float64, name)


@kernels
@pytest.mark.parametrize("lengths", [None, np.array([2, 4, 0])], ids=["full", "lengths"])
def test_inputs_are_never_modified(kind, opts, backend, lengths):
    p = make_problem(kind, T, B, I, H, seed=4)
    d_out, d_hn = make_upstream(T, B, H)
    arrays = dict(p, d_out=d_out, d_hn=d_hn, lengths=lengths)
    before = {k: None if v is None else v.copy() for k, v in arrays.items()}
    res = run(kind, opts, p, backend, reverse=True, lengths=lengths, d_out=d_out, d_hn=d_hn)
    res["out"] += 1.0           # writing into the results must not corrupt another backward either
    res["h_n"] += 1.0
    again = backward_fn(kind)(d_out, d_hn, res["cache"])
    for name, g in zip(("dx", "dh0", "dw_ih", "dw_hh", "db_ih", "db_hh"), again):
        assert_close(g, res[name], np.float64, name)
    for k, v in arrays.items():
        assert (v is None and before[k] is None) or np.array_equal(v, before[k]), k


@kernels
def test_backward_twice_gives_the_same_gradients(kind, opts, backend):
    p = make_problem(kind, T, B, I, H, seed=5)
    d_out, d_hn = make_upstream(T, B, H)
    _, _, cache = call(kind, opts, backend, p)
    g1 = backward_fn(kind)(d_out, d_hn, cache)
    g2 = backward_fn(kind)(d_out, d_hn, cache)
    for a, b in zip(g1, g2):
        assert np.array_equal(a, b)


@kernels
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("T_,B_", [(0, 3), (4, 0), (0, 0)])
def test_empty_sizes(kind, opts, backend, dtype, T_, B_):
    p = make_problem(kind, T_, B_, I, H, dtype=dtype)
    lengths = np.zeros(B_, dtype=np.int64)
    for kw in ({}, {"lengths": lengths, "reverse": True}):
        out, h_n, cache = call(kind, opts, backend, p, **kw)
        assert out.shape == (T_, B_, H) and out.dtype == dtype
        assert h_n.shape == (B_, H) and h_n.dtype == dtype
        assert np.array_equal(h_n, p["h0"])              # no step ran (T = 0 or length 0)
        d_out, d_hn = make_upstream(T_, B_, H, dtype=dtype)
        dx, dh0, dw_ih, dw_hh, db_ih, db_hh = backward_fn(kind)(d_out, d_hn, cache)
        assert dx.shape == (T_, B_, I) and dh0.shape == (B_, H)
        assert dw_ih.shape == p["w_ih"].shape and dw_hh.shape == p["w_hh"].shape
        assert db_ih.shape == (G(kind) * H,) and db_hh.shape == (G(kind) * H,)
        assert np.array_equal(dh0, d_hn)
        for g in (dx, dw_ih, dw_hh, db_ih, db_hh):
            assert g.dtype == dtype and not g.any()


@kernels
def test_no_bias_gives_none_bias_gradients(kind, opts, backend):
    p = make_problem(kind, T, B, I, H, bias=False, h0=False)
    res = run(kind, opts, p, backend)
    assert res["db_ih"] is None and res["db_hh"] is None
    assert res["dh0"].shape == (B, H)


@kernels
def test_nan_propagates(kind, opts, backend):
    p = make_problem(kind, T, B, I, H, seed=6)
    p["x"] = p["x"].copy()
    p["x"][1, 0, :] = np.nan                   # one whole input vector: every unit sees it
    with np.errstate(all="ignore"):
        res = run(kind, opts, p, backend)
    out = res["out"]
    assert np.all(np.isfinite(out[0])), "steps before the NaN are untouched"
    assert np.all(np.isfinite(out[:, 1:])), "other sequences are untouched"
    assert np.all(np.isnan(out[1, 0])), "the step that reads the NaN is NaN"
    assert np.all(np.isnan(res["h_n"][0])) and np.all(np.isfinite(res["h_n"][1:]))
    assert np.isnan(res["dw_ih"]).any()         # and the gradients see it too


@kernels
@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
def test_nonfinite_inputs_agree_with_the_reference(kind, opts, backend, value):
    """Inf / NaN anywhere: no crash or hang, and the same NaN/Inf pattern as the NumPy reference."""
    p = make_problem(kind, T, B, I, H, seed=7)
    p["x"] = p["x"].copy()
    p["x"][2, 1, 3] = value
    with np.errstate(all="ignore"):
        res = run(kind, opts, p, backend)
        ref = run(kind, opts, p, "numpy")
    for name in ("out", "h_n"):
        np.testing.assert_allclose(res[name], ref[name], rtol=tolerance(np.float64) * 1e3,
                                   atol=1e-12, equal_nan=True, err_msg=name)
