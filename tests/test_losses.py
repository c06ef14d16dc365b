"""Losses (fastrnn/losses.py): values, masks, gradients against central differences, torch."""
import numpy as np
import pytest

from fastrnn import losses

from conftest import rel_err
from test_blocks import GRAD_TOL, numeric_grad

LOSSES = {
    "ce": losses.SoftmaxCrossEntropy,
    "bce": losses.BinaryCrossEntropy,
    "mse": losses.MeanSquaredError,
}


def make_case(kind, lead, K=4, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(lead + (K,)) * 2
    if kind == "ce":
        y = rng.integers(0, K, lead)
    elif kind == "bce":
        y = rng.random(lead + (K,))
    else:
        y = rng.standard_normal(lead + (K,))
    return z, y


def per_step_loss(kind, z, y):
    """The definition, written plainly: one loss value per step (...)."""
    if kind == "ce":
        logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
        return -np.take_along_axis(logp, y[..., None], -1)[..., 0]
    if kind == "bce":
        p = 1 / (1 + np.exp(-z))
        return -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean(-1)
    return ((z - y) ** 2).mean(-1)


@pytest.mark.parametrize("kind", LOSSES)
def test_loss_is_summed_over_time_and_averaged_over_batch(kind):
    T, B = 5, 3
    z, y = make_case(kind, (T, B))
    lengths = np.array([5, 2, 0])
    valid = np.arange(T)[:, None] < lengths[None, :]
    expected = (per_step_loss(kind, z, y) * valid).sum() / B
    fn = LOSSES[kind]()
    assert fn(z, y, lengths=lengths) == pytest.approx(expected, rel=1e-12)
    # without time axis: (B, K) -> mean over the batch
    z2, y2 = make_case(kind, (B,))
    assert fn(z2, y2) == pytest.approx(per_step_loss(kind, z2, y2).mean(), rel=1e-12)
    # batch_first gives the same as time-major
    fb = LOSSES[kind](batch_first=True)
    assert fb(np.swapaxes(z, 0, 1), np.swapaxes(y, 0, 1), lengths=lengths) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("kind", LOSSES)
@pytest.mark.parametrize("masking", ["none", "lengths", "mask"])
def test_loss_backward_matches_central_differences(kind, masking):
    T, B = 4, 3
    z, y = make_case(kind, (T, B), seed=1)
    kwargs = {}
    if masking == "lengths":
        kwargs["lengths"] = np.array([4, 1, 2])
    elif masking == "mask":
        kwargs["mask"] = np.random.default_rng(2).random((T, B)) * (np.arange(T)[:, None] < 3)
    fn = LOSSES[kind]()

    def f():
        return fn(z, y, **kwargs)

    f()
    d = fn.backward()
    assert d.shape == z.shape and d.dtype == z.dtype
    assert rel_err(d.ravel(), numeric_grad(f, z)) < GRAD_TOL
    if masking == "lengths":
        assert not d[1:, 1].any() and not d[2:, 2].any()
    f()
    assert rel_err(fn.backward(grad=3.0), 3 * d) < 1e-15


def test_masked_steps_ignore_their_targets():
    z, y = make_case("ce", (3, 2))
    y = y.copy()
    y[2, 1] = -1                      # padding label at a masked step: fine
    fn = losses.SoftmaxCrossEntropy()
    fn(z, y, lengths=np.array([3, 2]))
    assert not fn.backward()[2, 1].any()
    with pytest.raises(ValueError, match="class id -1 out of range"):
        fn(z, y)
    y[0, 0] = 7
    with pytest.raises(ValueError, match=r"class id 7 out of range \[0, 4\)"):
        fn(z, y, lengths=np.array([3, 2]))


def test_loss_errors():
    ce = losses.SoftmaxCrossEntropy()
    with pytest.raises(ValueError, match="target: expected shape"):
        ce(np.zeros((3, 2, 4)), np.zeros((3, 3), int))
    with pytest.raises(TypeError, match="integer class ids"):
        ce(np.zeros((3, 4)), np.zeros(3))
    with pytest.raises(ValueError, match="lengths"):
        ce(np.zeros((3, 2, 4)), np.zeros((3, 2), int), lengths=np.array([4, 1]))
    with pytest.raises(ValueError, match="mask: expected shape"):
        ce(np.zeros((3, 2, 4)), np.zeros((3, 2), int), mask=np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        losses.BinaryCrossEntropy()(np.zeros((2, 1)), np.array([[0.0], [2.0]]))
    with pytest.raises(ValueError, match="input"):
        losses.MeanSquaredError()(np.zeros(3), np.zeros(3))
    with pytest.raises(RuntimeError, match="forward before backward"):
        losses.MeanSquaredError().backward()


def test_cross_entropy_is_stable_for_huge_logits():
    z = np.array([[1e4, -1e4, 0.0]], dtype=np.float32)
    ce = losses.SoftmaxCrossEntropy()
    assert ce(z, np.array([1])) == pytest.approx(2e4, rel=1e-6)
    assert np.all(np.isfinite(ce.backward()))
    bce = losses.BinaryCrossEntropy()
    assert bce(np.array([[1e4], [-1e4]]), np.array([[0.0], [1.0]])) == pytest.approx(1e4)


def test_losses_match_torch():
    torch = pytest.importorskip("torch")
    T, B, C = 5, 3, 4
    z, y = make_case("ce", (T, B), K=C, seed=4)
    lengths = np.array([5, 3, 2])
    zt = torch.from_numpy(z).requires_grad_(True)
    mask = torch.from_numpy((np.arange(T)[:, None] < lengths[None, :]).astype(np.float64))
    per = torch.nn.functional.cross_entropy(zt.reshape(-1, C), torch.from_numpy(y).reshape(-1), reduction="none")
    ref = (per.reshape(T, B) * mask).sum() / B
    ref.backward()
    ce = losses.SoftmaxCrossEntropy()
    assert ce(z, y, lengths=lengths) == pytest.approx(ref.item(), rel=1e-12)
    np.testing.assert_allclose(ce.backward(), zt.grad.numpy(), rtol=1e-10, atol=1e-14)

    zb, yb = make_case("bce", (B,), K=C, seed=5)
    zt = torch.from_numpy(zb).requires_grad_(True)
    ref = torch.nn.functional.binary_cross_entropy_with_logits(zt, torch.from_numpy(yb))
    ref.backward()
    bce = losses.BinaryCrossEntropy()
    assert bce(zb, yb) * 1.0 == pytest.approx(ref.item(), rel=1e-12)   # K averaged, batch averaged
    np.testing.assert_allclose(bce.backward(), zt.grad.numpy(), rtol=1e-10)
