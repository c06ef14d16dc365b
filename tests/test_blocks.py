"""Dense, Embedding, DotAttention: forward values, backward against central differences (float64),
and a whole network's gradient -- embedding -> RNN/GRU -> dense -> loss -- through the layers."""
import numpy as np
import pytest

import fastrnn
from fastrnn import losses
from fastrnn.blocks import DotAttention

from conftest import BACKENDS, rel_err

GRAD_TOL = 1e-6     # SPEC §5: central differences, float64


def numeric_grad(f, x, eps=1e-6, entries=None):
    """Central differences of the scalar f() with respect to the array x (perturbed in place)."""
    flat = x.reshape(-1)
    idx = range(flat.size) if entries is None else entries
    out = []
    for i in idx:
        old = flat[i]
        flat[i] = old + eps
        fp = f()
        flat[i] = old - eps
        fm = f()
        flat[i] = old
        out.append((fp - fm) / (2 * eps))
    return np.array(out)


def sample_entries(size, rng, k=25):
    return np.sort(rng.choice(size, size=min(k, size), replace=False))


# ---- Dense ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("activation", [None, "tanh", "relu", "sigmoid"])
@pytest.mark.parametrize("shape", [(5, 4), (3, 2, 4)])
def test_dense_backward_matches_central_differences(activation, shape):
    rng = np.random.default_rng(0)
    dense = fastrnn.Dense(4, 3, activation=activation, dtype=np.float64, seed=1)
    x = rng.standard_normal(shape)
    if activation == "relu":        # keep away from the kink
        y0 = x @ dense.parameters()["weight"].T + dense.parameters()["bias"]
        assert np.abs(y0).min() > 1e-3
    up = rng.standard_normal(shape[:-1] + (3,))

    def f():
        return float(np.sum(dense(x) * up))

    f()
    dense.zero_grad()
    dx = dense.backward(up)
    assert dx.shape == x.shape
    assert rel_err(dx.ravel(), numeric_grad(f, x)) < GRAD_TOL
    for name, p in dense.parameters().items():
        assert rel_err(dense.grads[name].ravel(), numeric_grad(f, p)) < GRAD_TOL, name


def test_dense_forward_is_affine_map_and_accumulates():
    dense = fastrnn.Dense(3, 2, seed=0, dtype=np.float64)
    W, b = dense.parameters()["weight"], dense.parameters()["bias"]
    x = np.arange(12.0).reshape(2, 2, 3)
    np.testing.assert_allclose(dense(x), x @ W.T + b)
    dense.backward(np.ones((2, 2, 2)))
    g1 = dense.grads["weight"].copy()
    dense(x)
    dense.backward(np.ones((2, 2, 2)))
    np.testing.assert_allclose(dense.grads["weight"], 2 * g1)
    dense.zero_grad()
    assert not dense.grads["weight"].any()


def test_dense_errors_and_state_dict():
    dense = fastrnn.Dense(3, 2)
    with pytest.raises(RuntimeError, match="forward before backward"):
        dense.backward(np.zeros((1, 2)))
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        dense(np.zeros((4, 5)))
    with pytest.raises(ValueError, match="activation"):
        fastrnn.Dense(3, 2, activation="softmax")
    dense(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="dy"):
        dense.backward(np.zeros((4, 3)))
    other = fastrnn.Dense(3, 2, seed=5)
    other.load_state_dict(dense.state_dict())
    np.testing.assert_array_equal(other.parameters()["weight"], dense.parameters()["weight"])
    with pytest.raises(KeyError):
        other.load_state_dict({"weight": np.zeros((2, 3))})
    with pytest.raises(ValueError, match="shape"):
        other.load_state_dict({"weight": np.zeros((3, 3)), "bias": np.zeros(2)})


def test_dense_matches_torch_linear():
    torch = pytest.importorskip("torch")
    dense = fastrnn.Dense(5, 4, dtype=np.float64, seed=0)
    lin = torch.nn.Linear(5, 4).double()
    lin.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in dense.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((3, 2, 5))
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = lin(xt)
    up = np.random.default_rng(1).standard_normal(yt.shape)
    yt.backward(torch.from_numpy(up))
    np.testing.assert_allclose(dense(x), yt.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(dense.backward(up), xt.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(dense.grads["weight"], lin.weight.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(dense.grads["bias"], lin.bias.grad.numpy(), rtol=1e-12)


# ---- Embedding ------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(3, 2), (40, 8)])       # few ids (add.at) and many repeats (sorted sums)
def test_embedding_backward_matches_central_differences(shape):
    rng = np.random.default_rng(0)
    emb = fastrnn.Embedding(6, 4, dtype=np.float64, seed=0)
    ids = rng.integers(0, 6, shape)
    up = rng.standard_normal(shape + (4,))

    def f():
        return float(np.sum(emb(ids) * up))

    f()
    assert emb.backward(up) is None
    w = emb.parameters()["weight"]
    assert rel_err(emb.grads["weight"].ravel(), numeric_grad(f, w)) < GRAD_TOL
    # and exactly the scatter-add of the upstream rows
    expected = np.zeros_like(w)
    np.add.at(expected, ids.ravel(), up.reshape(-1, 4))
    np.testing.assert_allclose(emb.grads["weight"], expected, rtol=1e-12, atol=1e-12)


def test_embedding_lookup_and_errors():
    emb = fastrnn.Embedding(5, 3, seed=0)
    ids = np.array([[0, 4], [2, 2]])
    np.testing.assert_array_equal(emb(ids), emb.parameters()["weight"][ids])
    with pytest.raises(ValueError, match="token id 5 out of range"):
        emb(np.array([1, 5]))
    with pytest.raises(ValueError, match="token id -1"):
        emb(np.array([-1]))
    with pytest.raises(TypeError, match="integer"):
        emb(np.array([0.5]))
    assert emb(np.zeros((0, 3), np.int64)).shape == (0, 3, 3)


# ---- attention ------------------------------------------------------------------------------------

def test_dot_attention_backward_matches_central_differences():
    rng = np.random.default_rng(0)
    Tq, Tk, B, H = 3, 5, 4, 6
    q = rng.standard_normal((Tq, B, H))
    k = rng.standard_normal((Tk, B, H))
    lengths = np.array([5, 2, 0, 3])
    up = rng.standard_normal((Tq, B, H))
    att = DotAttention(dtype=np.float64)

    def f():
        return float(np.sum(att(q, k, lengths)[0] * up))

    ctx, w = att(q, k, lengths)
    np.testing.assert_allclose(w.sum(axis=2)[lengths > 0], 1.0)
    assert not w[1, :, 2:].any() and not ctx[:, 2].any()        # masked keys, and no key at all
    dq, dk = att.backward(up)
    assert rel_err(dq.ravel(), numeric_grad(f, q)) < GRAD_TOL
    assert rel_err(dk.ravel(), numeric_grad(f, k)) < GRAD_TOL
    assert not dk[2:, 1].any()


# ---- a whole network ------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell", ["rnn", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_network_gradient_embedding_rnn_dense_loss(backend, cell, bidirectional):
    """embedding -> (2-layer) RNN/GRU with lengths -> dense at every step -> softmax cross-entropy
    summed over steps: every parameter's gradient against central differences."""
    rng = np.random.default_rng(3)
    V, E, H, C, T, B = 7, 4, 5, 3, 6, 4
    emb = fastrnn.Embedding(V, E, dtype=np.float64, seed=0)
    Layer = fastrnn.GRU if cell == "gru" else fastrnn.RNN
    rnn = Layer(E, H, num_layers=2, bidirectional=bidirectional, dtype=np.float64, seed=1, backend=backend)
    D = 2 if bidirectional else 1
    head = fastrnn.Dense(D * H, C, dtype=np.float64, seed=2)
    loss_fn = losses.SoftmaxCrossEntropy()
    ids = rng.integers(0, V, (T, B))
    target = rng.integers(0, C, (T, B))
    lengths = np.array([6, 3, 1, 4])
    blocks = [emb, rnn, head]

    def f():
        out, _ = rnn(emb(ids), lengths=lengths)
        return loss_fn(head(out), target, lengths=lengths)

    f()
    for b in blocks:
        b.zero_grad()
    dx, _ = rnn.backward(head.backward(loss_fn.backward()))
    emb.backward(dx)
    for b in blocks:
        for name, p in b.parameters().items():
            entries = sample_entries(p.size, rng)
            num = numeric_grad(f, p, entries=entries)
            ana = b.grads[name].reshape(-1)[entries]
            assert rel_err(ana, num) < GRAD_TOL, f"{type(b).__name__}.{name}"


def test_network_final_state_gradient():
    """many-to-one: the final state h_n -> dense -> MSE, through d_hn."""
    rng = np.random.default_rng(0)
    T, B, I, H = 5, 3, 2, 4
    gru = fastrnn.GRU(I, H, dtype=np.float64, seed=0)
    head = fastrnn.Dense(H, 1, dtype=np.float64, seed=1)
    mse = losses.MeanSquaredError()
    x = rng.standard_normal((T, B, I))
    y = rng.standard_normal((B, 1))
    lengths = np.array([5, 2, 4])

    def f():
        _, h_n = gru(x, lengths=lengths)
        return mse(head(h_n[-1]), y)

    f()
    gru.zero_grad()
    head.zero_grad()
    d_hn = head.backward(mse.backward())[None]
    out_shape = (T, B, H)
    dx, _ = gru.backward(np.zeros(out_shape), d_hn)
    assert rel_err(dx.ravel(), numeric_grad(f, x)) < GRAD_TOL
    for name, p in gru.parameters().items():
        assert rel_err(gru.grads[name].ravel(), numeric_grad(f, p)) < GRAD_TOL, name
