"""fastrnn.RNN / fastrnn.GRU layer behaviour, without torch: shapes, options, parameters and their
gradients, state dicts, dropout, refusals, and the layer gradient against central finite differences."""
import itertools
import warnings

import numpy as np
import pytest

import fastrnn

BACKENDS = fastrnn.backends()
CLASSES = {"GRU": fastrnn.GRU, "RNN": fastrnn.RNN}


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    nb = np.linalg.norm(b)
    diff = np.linalg.norm(a - b)
    return diff / nb if nb > 0 else diff


def make(name, *args, **kw):
    return CLASSES[name](*args, **kw)


def loss_and_grads(layer, x, h0, lengths, R1, R2):
    out, h_n = layer(x, h0=h0, lengths=lengths)
    return float(np.sum(out * R1) + np.sum(h_n * R2))


# ---------------------------------------------------------------- shapes for every option mix

OPTION_MIXES = list(itertools.product(
    ["GRU", "RNN"],      # layer
    [1, 2],              # num_layers
    [False, True],       # bidirectional
    [False, True],       # batch_first
    [False, True],       # bias
    [False, True],       # lengths
))


@pytest.mark.parametrize("name,L,bidir,bf,bias,use_len", OPTION_MIXES)
def test_shapes_every_option_mix(backend, name, L, bidir, bf, bias, use_len):
    T, B, I, H = 5, 3, 4, 6
    D = 2 if bidir else 1
    layer = make(name, I, H, num_layers=L, bidirectional=bidir, batch_first=bf, bias=bias,
                 seed=1, backend=backend)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, T, I) if bf else (T, B, I)).astype(np.float32)
    h0 = rng.standard_normal((L * D, B, H)).astype(np.float32)
    lengths = np.array([5, 0, 3]) if use_len else None
    out, h_n = layer(x, h0, lengths=lengths)
    assert out.shape == ((B, T, D * H) if bf else (T, B, D * H))
    assert h_n.shape == (L * D, B, H)
    assert out.dtype == np.float32 and h_n.dtype == np.float32
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(h_n))
    if use_len:
        tm = out.transpose(1, 0, 2) if bf else out
        for b, n in enumerate(lengths):
            assert np.all(tm[n:, b] == 0)           # padded positions are zero
        np.testing.assert_array_equal(h_n[:, 1], h0[:, 1])  # a 0-length sequence keeps h0
    # the forward half's h_n of the last layer is the state at the last valid step
    tm = out.transpose(1, 0, 2) if bf else out
    last = (lengths - 1) if use_len else np.full(B, T - 1)
    for b in range(B):
        if last[b] >= 0:
            np.testing.assert_allclose(h_n[(L - 1) * D, b], tm[last[b], b, :H], rtol=1e-6, atol=1e-7)
            if bidir:  # the reverse half ends at t = 0
                np.testing.assert_allclose(h_n[(L - 1) * D + 1, b], tm[0, b, H:], rtol=1e-6, atol=1e-7)
    d_out = rng.standard_normal(out.shape).astype(np.float32)
    dx, dh0 = layer.backward(d_out, rng.standard_normal(h_n.shape))
    assert dx.shape == x.shape and dx.dtype == np.float32
    assert dh0.shape == h_n.shape and dh0.dtype == np.float32
    if use_len:
        dxt = dx.transpose(1, 0, 2) if bf else dx
        for b, n in enumerate(lengths):
            assert np.all(dxt[n:, b] == 0)          # padded steps get no gradient
    for k, p in layer.parameters().items():
        assert layer.grads[k].shape == p.shape
        assert np.all(np.isfinite(layer.grads[k]))


@pytest.mark.parametrize("name", ["GRU", "RNN"])
@pytest.mark.parametrize("T,B", [(0, 3), (4, 0), (0, 0)])
def test_empty_inputs(backend, name, T, B):
    layer = make(name, 3, 4, num_layers=2, bidirectional=True, seed=0, backend=backend)
    out, h_n = layer(np.zeros((T, B, 3)))
    assert out.shape == (T, B, 8) and h_n.shape == (4, B, 4)
    assert np.all(h_n == 0)
    dx, dh0 = layer.backward(np.zeros((T, B, 8)))
    assert dx.shape == (T, B, 3) and dh0.shape == (4, B, 4)


def test_parameter_names_shapes_and_order():
    gru = fastrnn.GRU(3, 5, num_layers=2, bidirectional=True, seed=0)
    expected = []
    for layer in range(2):
        for suffix in ("", "_reverse"):
            expected += [f"weight_ih_l{layer}{suffix}", f"weight_hh_l{layer}{suffix}",
                         f"bias_ih_l{layer}{suffix}", f"bias_hh_l{layer}{suffix}"]
    params = gru.parameters()
    assert list(params) == expected
    assert list(gru.state_dict()) == expected
    assert set(gru.grads) == set(expected)
    assert params["weight_ih_l0"].shape == (15, 3)
    assert params["weight_ih_l1"].shape == (15, 10)
    assert params["weight_hh_l1_reverse"].shape == (15, 5)
    assert params["bias_hh_l0"].shape == (15,)
    rnn = fastrnn.RNN(3, 5, bias=False, seed=0)
    assert list(rnn.parameters()) == ["weight_ih_l0", "weight_hh_l0"]
    assert rnn.parameters()["weight_hh_l0"].shape == (5, 5)


@pytest.mark.parametrize("name", ["GRU", "RNN"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_init_uniform_and_seeded(name, dtype):
    H = 16
    a = make(name, 7, H, num_layers=2, bidirectional=True, seed=3, dtype=dtype)
    b = make(name, 7, H, num_layers=2, bidirectional=True, seed=3, dtype=dtype)
    c = make(name, 7, H, num_layers=2, bidirectional=True, seed=4, dtype=dtype)
    bound = 1 / np.sqrt(H)
    allv = np.concatenate([p.ravel() for p in a.parameters().values()])
    assert allv.dtype == dtype
    assert np.all(np.abs(allv) <= bound)
    assert allv.min() < -0.9 * bound and allv.max() > 0.9 * bound   # uses the whole interval
    assert abs(allv.mean()) < 0.1 * bound
    for k in a.parameters():
        np.testing.assert_array_equal(a.parameters()[k], b.parameters()[k])
        assert a.parameters()[k].dtype == dtype
        assert not np.array_equal(a.parameters()[k], c.parameters()[k])


def test_parameters_are_live(backend):
    layer = fastrnn.GRU(3, 4, seed=0, backend=backend)
    x = np.random.default_rng(0).standard_normal((4, 2, 3))
    out1, _ = layer(x)
    params = layer.parameters()
    params["weight_ih_l0"] *= 2           # an optimizer's in-place update
    params["bias_hh_l0"] -= 0.1
    out2, _ = layer(x)
    assert not np.allclose(out1, out2)
    np.testing.assert_array_equal(layer.parameters()["weight_ih_l0"], params["weight_ih_l0"])
    assert layer.parameters()["weight_ih_l0"] is params["weight_ih_l0"]


# ---------------------------------------------------------------- gradients: accumulation, zero_grad

@pytest.mark.parametrize("name", ["GRU", "RNN"])
def test_grads_accumulate_and_zero_grad(backend, name):
    rng = np.random.default_rng(1)
    layer = make(name, 3, 4, num_layers=2, bidirectional=True, dtype=np.float64, seed=0, backend=backend)
    x = rng.standard_normal((5, 2, 3))
    out, h_n = layer(x)
    R1, R2 = rng.standard_normal(out.shape), rng.standard_normal(h_n.shape)
    grads_ref = {k: g.copy() for k, g in layer.grads.items()}
    assert all(np.all(g == 0) for g in grads_ref.values())
    g_objects = dict(layer.grads)
    dx1, dh1 = layer.backward(R1, R2)
    once = {k: g.copy() for k, g in layer.grads.items()}
    assert all(np.any(g != 0) for g in once.values())
    dx2, dh2 = layer.backward(R1, R2)         # the same forward again: grads add up
    np.testing.assert_array_equal(dx1, dx2)
    np.testing.assert_array_equal(dh1, dh2)
    for k in once:
        np.testing.assert_allclose(layer.grads[k], 2 * once[k], rtol=1e-12, atol=1e-15)
    # a second forward + backward accumulates on top as well
    layer(x)
    layer.backward(R1, R2)
    for k in once:
        np.testing.assert_allclose(layer.grads[k], 3 * once[k], rtol=1e-12, atol=1e-15)
    layer.zero_grad()
    for k, g in layer.grads.items():
        assert np.all(g == 0)
        assert g is g_objects[k]              # zeroed in place
    layer.backward(R1, R2)
    for k in once:
        np.testing.assert_allclose(layer.grads[k], once[k], rtol=1e-12, atol=1e-15)


def test_backward_default_d_hn_is_zero(backend):
    rng = np.random.default_rng(2)
    layer = fastrnn.RNN(3, 4, num_layers=2, dtype=np.float64, seed=0, backend=backend)
    x = rng.standard_normal((4, 2, 3))
    out, h_n = layer(x)
    R1 = rng.standard_normal(out.shape)
    dx1, dh1 = layer.backward(R1)
    g1 = {k: g.copy() for k, g in layer.grads.items()}
    layer.zero_grad()
    dx2, dh2 = layer.backward(R1, np.zeros_like(h_n))
    np.testing.assert_array_equal(dx1, dx2)
    np.testing.assert_array_equal(dh1, dh2)
    for k in g1:
        np.testing.assert_array_equal(g1[k], layer.grads[k])


def test_backward_before_forward_raises(backend):
    for layer in (fastrnn.GRU(2, 3, backend=backend), fastrnn.RNN(2, 3, backend=backend)):
        with pytest.raises(RuntimeError, match="forward"):
            layer.backward(np.zeros((1, 1, 3)))


def test_backward_shape_checks(backend):
    layer = fastrnn.GRU(2, 3, num_layers=2, bidirectional=True, batch_first=True, backend=backend)
    out, h_n = layer(np.zeros((4, 5, 2)))
    assert out.shape == (4, 5, 6)
    with pytest.raises(ValueError, match="d_out"):
        layer.backward(np.zeros((5, 4, 6)))    # time-major although batch_first
    with pytest.raises(ValueError, match="d_hn"):
        layer.backward(np.zeros((4, 5, 6)), np.zeros((2, 4, 3)))
    with pytest.raises(TypeError, match="d_out"):
        layer.backward(np.zeros((4, 5, 6), np.complex64))
    assert all(np.all(g == 0) for g in layer.grads.values())   # refused calls accumulate nothing


# ---------------------------------------------------------------- state dicts

@pytest.mark.parametrize("name", ["GRU", "RNN"])
def test_state_dict_round_trip(backend, name):
    kw = dict(num_layers=2, bidirectional=True, dtype=np.float64, backend=backend)
    a = make(name, 3, 4, seed=0, **kw)
    b = make(name, 3, 4, seed=1, **kw)
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    sd = a.state_dict()
    assert list(sd) == list(a.parameters())
    for k in sd:                            # copies, not the live arrays
        assert sd[k] is not a.parameters()[k]
        assert not np.shares_memory(sd[k], a.parameters()[k])
    sd["weight_ih_l0"][...] = 0
    assert np.any(a.parameters()["weight_ih_l0"] != 0)
    live_before = b.parameters()
    result = b.load_state_dict(a.state_dict())
    assert list(result.missing_keys) == [] and list(result.unexpected_keys) == []
    for k, v in b.parameters().items():
        assert v is live_before[k]          # copied into the live arrays
        np.testing.assert_array_equal(v, a.parameters()[k])
    oa, ha = a(x)
    ob, hb = b(x)
    np.testing.assert_array_equal(oa, ob)
    np.testing.assert_array_equal(ha, hb)


def test_load_state_dict_casts_dtype_and_accepts_lists():
    src = fastrnn.GRU(3, 4, dtype=np.float64, seed=0)
    dst = fastrnn.GRU(3, 4, dtype=np.float32, seed=1)
    dst.load_state_dict(src.state_dict())
    for k, v in dst.parameters().items():
        assert v.dtype == np.float32
        np.testing.assert_array_equal(v, src.parameters()[k].astype(np.float32))
    sd = {k: v.tolist() for k, v in src.state_dict().items()}
    dst64 = fastrnn.GRU(3, 4, dtype=np.float64, seed=1)
    dst64.load_state_dict(sd)
    for k, v in dst64.parameters().items():
        np.testing.assert_array_equal(v, src.parameters()[k])


def test_load_state_dict_errors():
    layer = fastrnn.GRU(3, 4, num_layers=2, seed=0)
    before = layer.state_dict()
    good = fastrnn.GRU(3, 4, num_layers=2, seed=1).state_dict()

    missing = dict(good)
    del missing["bias_hh_l1"]
    with pytest.raises((KeyError, ValueError), match="bias_hh_l1"):
        layer.load_state_dict(missing)

    extra = dict(good)
    extra["weight_ih_l2"] = np.zeros((12, 4))
    with pytest.raises((KeyError, ValueError), match="weight_ih_l2"):
        layer.load_state_dict(extra)

    bad_shape = dict(good)
    bad_shape["weight_hh_l0"] = np.zeros((12, 5))
    with pytest.raises(ValueError, match="weight_hh_l0"):
        layer.load_state_dict(bad_shape)

    bad_type = dict(good)
    bad_type["bias_ih_l0"] = np.zeros(12, np.complex128)
    with pytest.raises(TypeError, match="bias_ih_l0"):
        layer.load_state_dict(bad_type)

    for k, v in layer.state_dict().items():  # nothing was changed by the refused loads
        np.testing.assert_array_equal(v, before[k])

    # strict=False loads what it can and reports the rest
    result = layer.load_state_dict({**missing, "weight_ih_l2": np.zeros(3)}, strict=False)
    assert list(result.missing_keys) == ["bias_hh_l1"]
    assert list(result.unexpected_keys) == ["weight_ih_l2"]
    np.testing.assert_array_equal(layer.parameters()["weight_ih_l0"], good["weight_ih_l0"])
    np.testing.assert_array_equal(layer.parameters()["bias_hh_l1"], before["bias_hh_l1"])

    # a no-bias layer refuses bias keys; a biased one needs them
    nobias = fastrnn.GRU(3, 4, num_layers=2, bias=False, seed=0)
    with pytest.raises((KeyError, ValueError), match="bias_ih_l0"):
        nobias.load_state_dict(good)
    with pytest.raises((KeyError, ValueError), match="bias_ih_l0"):
        layer.load_state_dict(nobias.state_dict())


# ---------------------------------------------------------------- dropout and train/eval

def test_train_eval_modes():
    layer = fastrnn.GRU(2, 3, num_layers=2, dropout=0.5, seed=0)
    assert layer.training is True
    assert layer.eval() is layer and layer.training is False
    assert layer.train() is layer and layer.training is True
    assert layer.train(False) is layer and layer.training is False


@pytest.mark.parametrize("name", ["GRU", "RNN"])
def test_dropout_training_only_and_seeded(backend, name):
    x = np.random.default_rng(0).standard_normal((6, 4, 3))
    kw = dict(num_layers=3, bidirectional=True, dropout=0.5, dtype=np.float64, backend=backend)
    a = make(name, 3, 8, seed=11, **kw)
    b = make(name, 3, 8, seed=11, **kw)
    nodrop = make(name, 3, 8, seed=11, **{**kw, "dropout": 0.0})
    ref_out, ref_h = nodrop(x)
    oa1, ha1 = a(x)
    ob1, hb1 = b(x)
    np.testing.assert_array_equal(oa1, ob1)    # same seed -> same masks
    np.testing.assert_array_equal(ha1, hb1)
    oa2, _ = a(x)
    ob2, _ = b(x)
    np.testing.assert_array_equal(oa2, ob2)
    assert not np.allclose(oa1, oa2)           # fresh masks every call
    assert not np.allclose(oa1, ref_out)       # dropout active in training
    # the first layer's h_n is not affected by dropout (applied to its output only)
    np.testing.assert_allclose(ha1[:2], ref_h[:2], rtol=1e-12, atol=1e-14)
    # eval mode: no dropout, deterministic, equal to the dropout-free layer
    a.eval()
    oe1, he1 = a(x)
    oe2, he2 = a(x)
    np.testing.assert_array_equal(oe1, oe2)
    np.testing.assert_array_equal(he1, he2)
    np.testing.assert_allclose(oe1, ref_out, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(he1, ref_h, rtol=1e-12, atol=1e-14)
    a.train()
    oa3, _ = a(x)
    assert not np.allclose(oa3, ref_out)


def test_dropout_scaling_statistics():
    # with H large the dropped fraction of the layer-0 output is about p; kept values scale by 1/(1-p)
    p = 0.3
    layer = fastrnn.RNN(4, 200, num_layers=2, dropout=p, nonlinearity="relu", seed=5,
                        dtype=np.float64)
    x = np.random.default_rng(1).standard_normal((10, 8, 4))
    layer(x)
    mask = layer._ctx["masks"][0]
    assert mask is not None and layer._ctx["masks"][1] is None   # never after the last layer
    vals = np.unique(mask)
    np.testing.assert_allclose(vals, [0.0, 1 / (1 - p)])
    frac = np.mean(mask == 0)
    assert abs(frac - p) < 0.02


def test_dropout_validation_and_warning():
    for bad in (-0.1, 1.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match="dropout"):
            fastrnn.GRU(2, 3, num_layers=2, dropout=bad)
    with pytest.raises(TypeError, match="dropout"):
        fastrnn.GRU(2, 3, num_layers=2, dropout="0.5")
    with pytest.warns(UserWarning, match="dropout"):
        fastrnn.RNN(2, 3, num_layers=1, dropout=0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fastrnn.RNN(2, 3, num_layers=2, dropout=0.2)


# ---------------------------------------------------------------- input casting and refusals

@pytest.mark.parametrize("name", ["GRU", "RNN"])
def test_real_inputs_are_cast(backend, name):
    layer = make(name, 3, 4, num_layers=2, seed=0, backend=backend)
    xi = np.random.default_rng(0).integers(-2, 3, size=(5, 2, 3))
    out_f, h_f = layer(xi.astype(np.float32))
    for x in (xi, xi.astype(np.int8), xi.astype(np.uint8), xi.astype(np.float64), xi.astype(">f8"),
              xi.astype(np.float16), xi.astype(bool), xi.tolist()):
        out, h_n = layer(x)
        assert out.dtype == np.float32 and h_n.dtype == np.float32
    for x in (xi, xi.astype(">f4"), xi.astype(np.float64)):
        out, h_n = layer(x)
        np.testing.assert_array_equal(out, out_f)
    np.testing.assert_array_equal(h_n, h_f)
    out, _ = layer(xi.astype(np.float64), h0=np.zeros((2, 2, 4), np.int64))
    np.testing.assert_array_equal(out, out_f)
    # a float64 layer given float32 input
    l64 = make(name, 3, 4, dtype=np.float64, seed=0, backend=backend)
    out, h_n = l64(xi.astype(np.float32))
    assert out.dtype == np.float64 and h_n.dtype == np.float64
    dx, dh0 = l64.backward(np.ones((5, 2, 4), np.float32), np.ones((1, 2, 4), np.int32))
    assert dx.dtype == np.float64 and dh0.dtype == np.float64


def test_bad_inputs_refused(backend):
    layer = fastrnn.GRU(3, 4, num_layers=2, bidirectional=True, seed=0, backend=backend)
    x = np.zeros((5, 2, 3), np.float32)
    for bad in (x.astype(np.complex64), x.astype(object), np.full((5, 2, 3), "a"), None):
        with pytest.raises(TypeError, match="x"):
            layer(bad)
    with pytest.raises(ValueError, match=r"x.*3 dimensions"):
        layer(np.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"x.*\(5, 2, 3\).*\(5, 2, 7\)"):
        layer(np.zeros((5, 2, 7)))
    with pytest.raises(ValueError, match=r"h0.*\(4, 2, 4\).*\(2, 2, 4\)"):
        layer(x, h0=np.zeros((2, 2, 4)))
    with pytest.raises(ValueError, match="h0"):
        layer(x, h0=np.zeros((2, 4)))
    with pytest.raises(TypeError, match="h0"):
        layer(x, h0=np.zeros((4, 2, 4), np.complex128))
    for bad_len in ([5], [1, 2, 3], [-1, 2], [6, 2], [1.0, 2.0], [True, False], [[1, 2]]):
        with pytest.raises(ValueError, match="lengths"):
            layer(x, lengths=np.array(bad_len))
    bf = fastrnn.RNN(3, 4, batch_first=True, backend=backend)
    with pytest.raises(ValueError, match="lengths"):
        bf(np.zeros((2, 5, 3)), lengths=[5, 6])  # T is axis 1 with batch_first
    bf(np.zeros((2, 5, 3)), lengths=[5, 3])


def test_inputs_not_modified_and_strided_inputs(backend):
    rng = np.random.default_rng(3)
    layer = fastrnn.GRU(3, 4, num_layers=2, bidirectional=True, dtype=np.float64, seed=0,
                        backend=backend)
    big = rng.standard_normal((10, 4, 6))
    x = big[::2, ::2, ::2]                       # strided
    h0 = np.asfortranarray(rng.standard_normal((4, 2, 4)))
    lengths = np.array([5, 3])
    x_copy, h0_copy = x.copy(), h0.copy()
    x_ro = np.ascontiguousarray(x)
    x_ro.setflags(write=False)
    o1, h1 = layer(x, h0, lengths)
    o2, h2 = layer(x_ro, np.ascontiguousarray(h0), lengths)
    np.testing.assert_array_equal(o1, o2)
    np.testing.assert_array_equal(h1, h2)
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(h0, h0_copy)
    d_out = rng.standard_normal(o1.shape)
    d_copy = d_out.copy()
    layer.backward(d_out)
    np.testing.assert_array_equal(d_out, d_copy)


def test_constructor_validation():
    for bad in (0, -1):
        with pytest.raises(ValueError, match="input_size"):
            fastrnn.GRU(bad, 3)
        with pytest.raises(ValueError, match="hidden_size"):
            fastrnn.RNN(2, bad)
        with pytest.raises(ValueError, match="num_layers"):
            fastrnn.GRU(2, 3, num_layers=bad)
    for bad in (2.5, "3", None, True):
        with pytest.raises(TypeError, match="hidden_size"):
            fastrnn.GRU(2, bad)
    fastrnn.GRU(np.int64(2), np.int32(3))      # NumPy integers are ints
    with pytest.raises(ValueError, match="nonlinearity"):
        fastrnn.RNN(2, 3, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="nonlinearity"):
        fastrnn.RNN(2, 3, nonlinearity=None)
    for bad in (np.float16, np.int32, np.complex64, "bogus"):
        with pytest.raises((TypeError, ValueError), match="dtype"):
            fastrnn.GRU(2, 3, dtype=bad)
    assert fastrnn.GRU(2, 3, dtype="float64").dtype == np.float64
    for opt in ("bias", "batch_first", "bidirectional"):
        with pytest.raises(TypeError, match=opt):
            fastrnn.RNN(2, 3, **{opt: "yes"})
    with pytest.raises(TypeError, match="reset_after"):
        fastrnn.GRU(2, 3, reset_after=None)
    with pytest.raises(ValueError, match="backend"):
        fastrnn.GRU(2, 3, backend="cuda")


def test_repr():
    assert repr(fastrnn.GRU(10, 20)) == "GRU(10, 20)"
    assert repr(fastrnn.GRU(10, 20, num_layers=2, bias=False, batch_first=True, dropout=0.5,
                            bidirectional=True)) == \
        "GRU(10, 20, num_layers=2, bias=False, batch_first=True, dropout=0.5, bidirectional=True)"
    assert "reset_after=False" in repr(fastrnn.GRU(1, 2, reset_after=False))
    assert repr(fastrnn.RNN(3, 4, nonlinearity="relu")) == "RNN(3, 4, nonlinearity='relu')"
    assert "float64" in repr(fastrnn.RNN(3, 4, dtype=np.float64))


# ---------------------------------------------------------------- the layer vs the functional kernels

def test_layer_composes_functional_kernels(backend):
    """A 2-layer bidirectional GRU is two layers of two functional calls, concatenated."""
    from fastrnn import functional as F
    rng = np.random.default_rng(4)
    layer = fastrnn.GRU(3, 4, num_layers=2, bidirectional=True, reset_after=False,
                        dtype=np.float64, seed=0, backend=backend)
    x = rng.standard_normal((6, 3, 3))
    h0 = rng.standard_normal((4, 3, 4))
    lengths = np.array([6, 2, 4])
    out, h_n = layer(x, h0, lengths)
    p = layer.parameters()
    inp, hs = x, []
    for l in range(2):
        outs = []
        for d, sfx in enumerate(("", "_reverse")):
            o, h, _ = F.gru_forward(inp, h0[2 * l + d], p[f"weight_ih_l{l}{sfx}"], p[f"weight_hh_l{l}{sfx}"],
                                    p[f"bias_ih_l{l}{sfx}"], p[f"bias_hh_l{l}{sfx}"], reset_after=False,
                                    reverse=d == 1, lengths=lengths, backend=backend)
            outs.append(o)
            hs.append(h)
        inp = np.concatenate(outs, axis=2)
    np.testing.assert_array_equal(out, inp)
    np.testing.assert_array_equal(h_n, np.stack(hs))


# ---------------------------------------------------------------- gradients vs finite differences

def _fd_check(layer, x, h0, lengths, rng, tol=1e-6, eps=1e-6):
    out, h_n = layer(x, h0, lengths)
    R1, R2 = rng.standard_normal(out.shape), rng.standard_normal(h_n.shape)
    seed_state = None
    if layer.dropout > 0:  # replay the same masks in every forward
        seed_state = 1234

    def loss():
        if seed_state is not None:
            layer._rng = np.random.default_rng(seed_state)
        o, h = layer(x, h0, lengths)
        return np.sum(o * R1) + np.sum(h * R2)

    loss()
    layer.zero_grad()
    dx, dh0 = layer.backward(R1, R2)

    def numeric(arr):
        g = np.zeros_like(arr)
        it = np.nditer(arr, flags=["multi_index"])
        for _ in it:
            i = it.multi_index
            old = arr[i]
            arr[i] = old + eps
            lp = loss()
            arr[i] = old - eps
            lm = loss()
            arr[i] = old
            g[i] = (lp - lm) / (2 * eps)
        return g

    assert rel_err(dx, numeric(x)) <= tol
    assert rel_err(dh0, numeric(h0)) <= tol
    params = layer.parameters()
    for k, p in params.items():
        err = rel_err(layer.grads[k], numeric(p))
        assert err <= tol, (k, err)


@pytest.mark.parametrize("name,kw", [
    ("GRU", {}),
    ("GRU", {"reset_after": False, "batch_first": True}),
    ("RNN", {}),
    ("RNN", {"bias": False, "batch_first": True}),
])
def test_layer_gradient_vs_finite_differences(backend, name, kw):
    rng = np.random.default_rng(7)
    T, B, I, H = 4, 3, 2, 3
    layer = make(name, I, H, num_layers=2, bidirectional=True, dtype=np.float64, seed=2,
                 backend=backend, **kw)
    x = rng.standard_normal((B, T, I) if kw.get("batch_first") else (T, B, I))
    h0 = rng.standard_normal((4, B, H))
    _fd_check(layer, x, h0, np.array([4, 1, 3]), rng)


@pytest.mark.parametrize("name", ["GRU", "RNN"])
def test_layer_gradient_through_dropout_vs_finite_differences(backend, name):
    rng = np.random.default_rng(8)
    T, B, I, H = 3, 2, 2, 3
    layer = make(name, I, H, num_layers=3, bidirectional=True, dropout=0.4, dtype=np.float64,
                 seed=2, backend=backend)
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((6, B, H))
    _fd_check(layer, x, h0, None, rng)
