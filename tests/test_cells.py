"""fastrnn.GRUCell / fastrnn.RNNCell: against torch.nn.GRUCell / torch.nn.RNNCell on the same weights
(SPEC §5: float64 <= 1e-10, float32 <= 1e-4 relative, for h_next, dx, dh and every parameter
gradient), unbatched inputs, refused inputs, accumulation of gradients, and a cell unrolled over T
steps (forward, then backward step by step through the cell's tape) against the layer over T steps.
"""
import numpy as np
import pytest

import fastrnn
from conftest import BACKENDS, assert_close, rel_err, tolerance

DTYPES = [np.float64, np.float32]
PARAMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
CELLS = [("gru", {}), ("rnn", {"nonlinearity": "tanh"}), ("rnn", {"nonlinearity": "relu"})]
CELL_IDS = ["gru", "rnn-tanh", "rnn-relu"]


def make_cell(kind, I, H, **kw):
    return (fastrnn.GRUCell if kind == "gru" else fastrnn.RNNCell)(I, H, **kw)


def make_layer(kind, I, H, **kw):
    return (fastrnn.GRU if kind == "gru" else fastrnn.RNN)(I, H, **kw)


def data(B, I, H, dtype, seed=0, unbatched=False):
    rng = np.random.default_rng(seed)
    lead = () if unbatched else (B,)
    x = rng.standard_normal(lead + (I,)).astype(dtype)
    h = rng.standard_normal(lead + (H,)).astype(dtype)
    d = rng.standard_normal(lead + (H,)).astype(dtype)
    return x, h, d


# ---- against torch -------------------------------------------------------------------------------

@pytest.mark.parametrize("unbatched", [False, True], ids=["batched", "unbatched"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind,opts", CELLS, ids=CELL_IDS)
def test_matches_torch(kind, opts, backend, dtype, bias, unbatched):
    torch = pytest.importorskip("torch")
    I, H, B = 5, 7, 4
    dtype = np.dtype(dtype)
    tdt = {np.dtype(np.float64): torch.float64, np.dtype(np.float32): torch.float32}[dtype]
    torch.manual_seed(0)
    tcell = (torch.nn.GRUCell(I, H, bias=bias) if kind == "gru"
             else torch.nn.RNNCell(I, H, bias=bias, **opts)).to(tdt)
    cell = make_cell(kind, I, H, bias=bias, dtype=dtype, seed=3, backend=backend, **opts)
    cell.load_state_dict(tcell.state_dict())  # torch tensors accepted
    assert list(cell.parameters()) == [k for k, _ in tcell.named_parameters()]

    x, h, d = data(B, I, H, dtype, seed=1, unbatched=unbatched)
    xt = torch.tensor(x, requires_grad=True)
    ht = torch.tensor(h, requires_grad=True)
    h_next_t = tcell(xt, ht)
    (h_next_t * torch.tensor(d)).sum().backward()

    h_next = cell(x, h)
    dx, dh = cell.backward(d)
    assert_close(h_next, h_next_t.detach().numpy(), dtype, "h_next")
    assert_close(dx, xt.grad.numpy(), dtype, "dx")
    assert_close(dh, ht.grad.numpy(), dtype, "dh")
    for name, p in tcell.named_parameters():
        assert_close(cell.grads[name], p.grad.numpy(), dtype, name)

    # h omitted means zeros, as torch
    h0_t = tcell(torch.tensor(x))
    assert_close(cell(x), h0_t.detach().numpy(), dtype, "h_next with h=None")


def test_init_matches_layer_and_torch_shapes():
    for kind, G in (("gru", 3), ("rnn", 1)):
        cell = make_cell(kind, 6, 4, seed=11)
        layer = make_layer(kind, 6, 4, seed=11)
        shapes = {"weight_ih": (G * 4, 6), "weight_hh": (G * 4, 4), "bias_ih": (G * 4,), "bias_hh": (G * 4,)}
        assert {k: v.shape for k, v in cell.parameters().items()} == shapes
        for name, value in cell.parameters().items():
            np.testing.assert_array_equal(value, layer.parameters()[name + "_l0"])
            assert value.dtype == np.float32
            assert np.all(np.abs(value) <= 1 / np.sqrt(4))
        assert list(make_cell(kind, 6, 4, bias=False).parameters()) == ["weight_ih", "weight_hh"]


# ---- unrolled cell == layer --------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind,opts", CELLS + [("gru", {"reset_after": False})],
                         ids=CELL_IDS + ["gru-reset_before"])
def test_unrolled_cell_equals_layer(kind, opts, backend, dtype):
    T, B, I, H = 6, 3, 5, 4
    dtype = np.dtype(dtype)
    layer = make_layer(kind, I, H, dtype=dtype, seed=5, backend=backend, **opts)
    cell = make_cell(kind, I, H, dtype=dtype, seed=9, backend=backend, **opts)
    cell.load_state_dict({k[:-3]: v for k, v in layer.state_dict().items()})
    rng = np.random.default_rng(2)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    h0 = rng.standard_normal((B, H)).astype(dtype)
    d_out = rng.standard_normal((T, B, H)).astype(dtype)
    d_hn = rng.standard_normal((B, H)).astype(dtype)

    out, h_n = layer(x, h0[None])
    dx, dh0 = layer.backward(d_out, d_hn[None])

    h, outs = h0, []
    for t in range(T):
        h = cell(x[t], h)
        outs.append(h)
    assert cell.pending_steps == T
    assert_close(np.stack(outs), out, dtype, "out")
    assert_close(h, h_n[0], dtype, "h_n")
    dh, dxs = d_hn, [None] * T
    for t in reversed(range(T)):
        dxs[t], dh = cell.backward(d_out[t] + dh)
    assert cell.pending_steps == 0
    assert_close(np.stack(dxs), dx, dtype, "dx")
    assert_close(dh, dh0[0], dtype, "dh0")
    for name, g in cell.grads.items():
        assert_close(g, layer.grads[name + "_l0"], dtype, name)
    with pytest.raises(RuntimeError, match="no forward step"):
        cell.backward(d_hn)


# ---- behaviour -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,opts", CELLS, ids=CELL_IDS)
def test_unbatched_equals_batch_of_one(kind, opts):
    I, H = 5, 7
    cell = make_cell(kind, I, H, dtype=np.float64, seed=1, **opts)
    x, h, d = data(1, I, H, np.float64, unbatched=True)
    h1 = cell(x, h)
    dx1, dh1 = cell.backward(d)
    assert h1.shape == (H,) and dx1.shape == (I,) and dh1.shape == (H,)
    assert cell(x).shape == (H,)
    hb = cell(x[None], h[None])
    dxb, dhb = cell.backward(d[None])
    np.testing.assert_allclose(h1, hb[0], rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(dx1, dxb[0], rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(dh1, dhb[0], rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("kind,opts", CELLS, ids=CELL_IDS)
def test_grads_accumulate_and_zero_grad(kind, opts):
    I, H, B = 5, 7, 3
    cell = make_cell(kind, I, H, dtype=np.float64, seed=1, **opts)
    x, h, d = data(B, I, H, np.float64)
    cell(x, h)
    cell.backward(d)
    once = {k: v.copy() for k, v in cell.grads.items()}
    refs = {k: v for k, v in cell.grads.items()}
    cell(x, h)
    cell.backward(d)
    for k in PARAMS:
        assert_close(cell.grads[k], 2 * once[k], np.float64, k)
        assert cell.grads[k] is refs[k]  # accumulated in place
    cell.zero_grad()
    assert all(not g.any() for g in cell.grads.values())
    assert all(cell.grads[k] is refs[k] for k in PARAMS)


def test_tape_and_eval_mode():
    cell = fastrnn.GRUCell(3, 2, dtype=np.float64, seed=0)
    x, h, d = data(2, 3, 2, np.float64)
    with pytest.raises(RuntimeError, match="forward"):
        cell.backward(d)
    cell(x, h)
    cell(x, h)
    assert cell.pending_steps == 2
    cell.clear_tape()
    assert cell.pending_steps == 0
    cell.eval()
    for _ in range(5):
        h2 = cell(x, h)
    assert cell.pending_steps == 1  # inference keeps no history
    dx, dh = cell.backward(d)       # but the last step can still be backpropagated
    assert dx.shape == (2, 3) and dh.shape == (2, 2)
    assert cell.train() is cell and cell.training
    np.testing.assert_array_equal(cell(x, h), h2)


def test_inputs_cast_not_modified_and_strided():
    cell = fastrnn.GRUCell(4, 3, seed=0)  # float32
    rng = np.random.default_rng(0)
    x64 = rng.standard_normal((2, 8))[:, ::2]  # strided float64
    h = rng.standard_normal((2, 3))
    x_copy, h_copy = x64.copy(), h.copy()
    out = cell(x64, h)
    assert out.dtype == np.float32 and out.shape == (2, 3)
    np.testing.assert_array_equal(x64, x_copy)
    np.testing.assert_array_equal(h, h_copy)
    np.testing.assert_allclose(cell(np.ascontiguousarray(x64, np.float32), h.astype(np.float32)), out)
    ints = cell(np.ones((2, 4), dtype=np.int64))
    assert ints.dtype == np.float32
    dx, dh = cell.backward(np.ones((2, 3), dtype=np.int32))
    assert dx.dtype == np.float32 and dh.dtype == np.float32


def test_empty_batch():
    cell = fastrnn.RNNCell(4, 3, seed=0)
    h = cell(np.zeros((0, 4)))
    assert h.shape == (0, 3)
    dx, dh = cell.backward(np.zeros((0, 3)))
    assert dx.shape == (0, 4) and dh.shape == (0, 3)


def test_state_dict_roundtrip_and_errors():
    a = fastrnn.GRUCell(4, 3, seed=0)
    b = fastrnn.GRUCell(4, 3, seed=1)
    sd = a.state_dict()
    assert list(sd) == list(PARAMS)
    sd["weight_ih"][...] = 0  # a copy: a's parameters do not change
    assert a.parameters()["weight_ih"].any()
    b.load_state_dict(a.state_dict())
    for k in PARAMS:
        np.testing.assert_array_equal(a.parameters()[k], b.parameters()[k])
    with pytest.raises(KeyError, match="bias_hh"):
        b.load_state_dict({k: v for k, v in a.state_dict().items() if k != "bias_hh"})
    with pytest.raises(ValueError, match="weight_hh"):
        b.load_state_dict({**a.state_dict(), "weight_hh": np.zeros((3, 3))})
    assert "GRUCell(4, 3)" == repr(a)
    assert repr(fastrnn.RNNCell(4, 3, bias=False, nonlinearity="relu", dtype=np.float64)) == \
        "RNNCell(4, 3, bias=False, nonlinearity='relu', dtype=float64)"


# ---- refused inputs ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["gru", "rnn"])
def test_bad_call_arguments(kind):
    cell = make_cell(kind, 4, 3, seed=0)
    with pytest.raises(ValueError, match=r"x: .*\(2, 4\).*\(2, 5\)"):
        cell(np.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"x: .*\(4,\).*\(5,\)"):
        cell(np.zeros(5))
    with pytest.raises(ValueError, match=r"x: expected 2 dimensions.*\(1, 2, 4\)"):
        cell(np.zeros((1, 2, 4)))
    with pytest.raises(ValueError, match=r"x: "):
        cell(np.float32(1.0))
    with pytest.raises(ValueError, match=r"h: expected shape \(2, 3\).*\(2, 4\)"):
        cell(np.zeros((2, 4)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"h: expected shape \(3,\).*\(1, 3\)"):
        cell(np.zeros(4), np.zeros((1, 3)))   # unbatched x with a batched h, as torch refuses
    with pytest.raises(ValueError, match=r"h: expected shape \(1, 3\).*\(3,\)"):
        cell(np.zeros((1, 4)), np.zeros(3))
    with pytest.raises(TypeError, match="x: "):
        cell(np.zeros((2, 4), complex))
    with pytest.raises(TypeError, match="x: "):
        cell(np.array([["a"] * 4]))
    with pytest.raises(TypeError, match="h: "):
        cell(np.zeros((2, 4)), np.zeros((2, 3), complex))
    assert cell.pending_steps == 0  # nothing recorded by a refused call
    cell(np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"d_h_next: expected shape \(2, 3\).*\(3, 3\)"):
        cell.backward(np.zeros((3, 3)))
    with pytest.raises(TypeError, match="d_h_next: "):
        cell.backward(np.zeros((2, 3), complex))
    assert cell.pending_steps == 1 and not any(g.any() for g in cell.grads.values())
    cell.backward(np.zeros((2, 3)))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="input_size"):
        fastrnn.GRUCell(0, 3)
    with pytest.raises(TypeError, match="hidden_size"):
        fastrnn.RNNCell(4, 3.0)
    with pytest.raises(TypeError, match="bias"):
        fastrnn.GRUCell(4, 3, bias="yes")
    with pytest.raises(TypeError, match="reset_after"):
        fastrnn.GRUCell(4, 3, reset_after=None)
    with pytest.raises(ValueError, match="nonlinearity"):
        fastrnn.RNNCell(4, 3, nonlinearity="sigmoid")
    with pytest.raises(TypeError, match="dtype"):
        fastrnn.GRUCell(4, 3, dtype=np.int32)
    with pytest.raises(ValueError, match="backend"):
        fastrnn.RNNCell(4, 3, backend="nope")
    with pytest.raises(TypeError, match="mode"):
        fastrnn.GRUCell(4, 3).train("no")


def test_threads_give_same_results():
    cell = fastrnn.GRUCell(16, 32, dtype=np.float64, seed=0)
    x, h, d = data(5, 16, 32, np.float64)
    before = fastrnn.get_num_threads()
    try:
        fastrnn.set_num_threads(1)
        h1 = cell(x, h)
        g1 = cell.backward(d)
        fastrnn.set_num_threads(2)
        h2 = cell(x, h)
        g2 = cell.backward(d)
    finally:
        fastrnn.set_num_threads(before)
    assert rel_err(h1, h2) <= tolerance(np.float64)
    assert all(rel_err(a, b) <= tolerance(np.float64) for a, b in zip(g1, g2))
