"""Optimizers (fastrnn/optim.py): against torch.optim's update rules, convergence, clipping."""
import math

import numpy as np
import pytest

import fastrnn
from fastrnn import losses, optim


def torch_reference(opt_name, steps, **kw):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal((3, 4))
    grads = [rng.standard_normal((3, 4)) for _ in range(steps)]
    pt = torch.nn.Parameter(torch.from_numpy(p0.copy()))
    topt = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}[opt_name]([pt], **kw)
    p = p0.copy()
    g = np.zeros_like(p)
    ours = {"sgd": optim.SGD, "adam": optim.Adam}[opt_name]([(p, g)], **kw)
    for gr in grads:
        pt.grad = torch.from_numpy(gr.copy())
        topt.step()
        g[...] = gr
        ours.step()
    return p, pt.detach().numpy()


@pytest.mark.parametrize("opt_name, kw", [
    ("sgd", dict(lr=0.1)),
    ("sgd", dict(lr=0.1, momentum=0.9)),
    ("sgd", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("adam", dict(lr=0.01)),
    ("adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
])
def test_optimizers_match_torch(opt_name, kw):
    ours, ref = torch_reference(opt_name, 7, **kw)
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("make", [lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9), lambda ps: optim.Adam(ps, lr=0.1)])
def test_optimizers_train_a_dense_layer(make):
    """Least squares through a Dense block: both optimizers reach the exact solution's loss."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 3))
    w_true = np.array([[1.5, -2.0, 0.5]])
    y = X @ w_true.T + 0.3
    dense = fastrnn.Dense(3, 1, dtype=np.float64, seed=0)
    mse = losses.MeanSquaredError()
    opt = make(dense)
    for _ in range(300):
        opt.zero_grad()
        mse(dense(X), y)
        dense.backward(mse.backward())
        opt.step()
    assert mse(dense(X), y) < 1e-6
    np.testing.assert_allclose(dense.parameters()["weight"], w_true, atol=1e-3)


def test_clip_grad_norm_and_value():
    a, b = np.array([3.0, 0.0]), np.array([[4.0]])
    pa, pb = np.zeros(2), np.zeros((1, 1))
    norm = optim.clip_grad_norm([(pa, a), (pb, b)], max_norm=1.0)
    assert norm == pytest.approx(5.0)
    assert math.sqrt((a ** 2).sum() + (b ** 2).sum()) == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(a / b[0, 0], [0.75, 0.0])       # direction kept
    assert optim.clip_grad_norm([a, b], max_norm=10.0) == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(a, [0.6, 0.0], rtol=1e-5)        # below the limit: unchanged
    g = np.array([-3.0, 0.5, 2.0])
    optim.clip_grad_value([g], 1.0)
    np.testing.assert_array_equal(g, [-1.0, 0.5, 1.0])
    bad = np.array([np.inf, 1.0])
    assert optim.clip_grad_norm([bad], 1.0) == math.inf
    with pytest.raises(ValueError, match="max_norm"):
        optim.clip_grad_norm([g], 0)


def test_optimizer_collects_blocks_once_and_validates():
    gru = fastrnn.GRU(2, 3)
    dense = fastrnn.Dense(3, 1)
    opt = optim.Adam([gru, dense, dense])
    assert len(opt.params) == len(gru.parameters()) + 2
    gru.grads["weight_hh_l0"] += 1
    opt.zero_grad()
    assert not gru.grads["weight_hh_l0"].any()
    with pytest.raises(ValueError, match="lr"):
        optim.SGD(dense, lr=-1)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam(dense, betas=(1.0, 0.9))
    with pytest.raises(TypeError, match="params"):
        optim.SGD([object()], lr=0.1)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD(dense, lr=0.1, nesterov=True)
