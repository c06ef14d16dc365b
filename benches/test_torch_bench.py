"""Smoke tests of fastrnn.torch's benchmarks, on the "tiny" shape (a few seconds):

    pytest benches/test_torch_bench.py

The "fastrnn.torch" contender of benches.contenders (benches/contenders/torch_modules.py) computes what
fastrnn.functional computes from the same weights (forward output; dx, dh0 and the weight gradients of
its training calls, seeded either way, and of the cells' step-train), runs through a worker process as benches.run uses it, and shows in benches.run's
table; benches.torch_train's workers report positive step times and agreeing losses, and a loss
mismatch is caught. Skipped where torch is not installed.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fastrnn.torch as ft  # noqa: E402
from fastrnn import functional as F  # noqa: E402
from benches import contenders, orchestrate, run, torch_train, workloads  # noqa: E402
from benches.contenders.torch_modules import TorchModules  # noqa: E402

CELLS = {"rnn": "RNNCell", "gru": "GRUCell"}


@pytest.fixture(scope="module")
def contender():
    contender = contenders.CONTENDERS["fastrnn.torch"]
    info = contender.setup(1)
    assert info["torch"] == torch.__version__
    return contender


def close(a, b, tol=1e-4):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a - b) <= tol * np.linalg.norm(b)


@pytest.mark.parametrize("cell", workloads.CELLS)
def test_fwd_matches_functional(contender, cell):
    w = workloads.Workload(cell, "tiny", "fwd")
    inputs = workloads.make_inputs(w)
    out = contender.build(w, inputs)()
    forward = {"rnn": F.rnn_forward, "gru": F.gru_forward}[cell]
    assert close(out.numpy(), forward(*inputs[:6])[0])


def check_grads(train, inputs, cell, step):
    """The gradients left by a training call against fastrnn.functional's backward."""
    model, x, h0 = train.tensors
    forward, backward = {"rnn": (F.rnn_forward, F.rnn_backward), "gru": (F.gru_forward, F.gru_backward)}[cell]
    T = 1 if step else len(inputs.x)
    d_out = inputs.d_out[:T]
    dx, dh0, dw_ih, dw_hh, db_ih, db_hh = backward(d_out, None, forward(inputs.x[:T], *inputs[1:6])[2])
    assert close(x.grad.numpy(), dx[0] if step else dx)
    assert close(h0.grad.numpy().reshape(dh0.shape), dh0)
    suffix = "" if step else "_l0"
    for name, want in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), (dw_ih, dw_hh, db_ih, db_hh)):
        assert close(getattr(model, name + suffix).grad.numpy(), want), name


@pytest.mark.parametrize("like_torch", [False, True], ids=["backward(d_out)", "sum(out*d_out)"])
@pytest.mark.parametrize("cell", workloads.CELLS)
def test_train_matches_functional(contender, cell, like_torch):
    w = workloads.Workload(cell, "tiny", "train")
    inputs = workloads.make_inputs(w)
    if like_torch:
        contender = TorchModules(like_torch=True)
    train = contender.build(w, inputs)
    train()
    train()  # a second call: the gradients are zeroed between calls, not accumulated
    check_grads(train, inputs, cell, step=False)


@pytest.mark.parametrize("phase", workloads.STEP_PASSES)
@pytest.mark.parametrize("cell", workloads.CELLS)
def test_step_passes(contender, cell, phase):
    w = workloads.Workload(cell, "tiny", phase)
    inputs = workloads.make_inputs(w)
    if not hasattr(ft, CELLS[cell]):
        with pytest.raises(contenders.Unsupported):
            contender.build(w, inputs)
        return
    fn = contender.build(w, inputs)
    result = fn()
    if phase == "step":
        forward = {"rnn": F.rnn_forward, "gru": F.gru_forward}[cell]
        assert close(result.numpy(), forward(inputs.x[:1], *inputs[1:6])[0][0])
    else:
        fn()
        check_grads(fn, inputs, cell, step=True)


def test_through_a_worker():
    """As benches.run runs it: `python -m benches.worker --worker fastrnn.torch` (a step pass is timed
    once the cells exist, a gap before: never an error)."""
    ws = [workloads.Workload("gru", "tiny", p) for p in ("fwd", "train", "step")]
    results = orchestrate.measure({"fastrnn.torch": ws}, threads=1, rounds=1, min_time=0.01)
    assert not results.problems
    assert results.time("fastrnn.torch", ws[0]) > 0 and results.time("fastrnn.torch", ws[1]) > 0
    step = results.time("fastrnn.torch", ws[2])
    assert (step > 0) if hasattr(ft, "GRUCell") else step is None
    assert results.info["fastrnn.torch"]["torch"] == torch.__version__


def test_run_table_has_the_column():
    headers = [h for h, _ in run.columns(["fastrnn", "fastrnn.torch", "torch"])]
    assert "fastrnn.torch ms" in headers and "fastrnn.torch/fastrnn" in headers


def test_train_step_same_loss_in_process():
    """The converted model really is fastrnn.torch's and trains as torch's does, step by step."""
    steps = {name: torch_train.build(name, workloads.parse_shape("tiny"))[0] for name in torch_train.CONTENDERS}
    for _ in range(3):
        a, b = (steps[name]().item() for name in torch_train.CONTENDERS)
        assert abs(a - b) <= torch_train.LOSS_RTOL["float32"] * abs(a)


def test_train_step_through_workers():
    shapes = workloads.parse_shapes("tiny")
    result = torch_train.measure(shapes, threads=1, rounds=1, min_time=0.01)
    assert not result["problems"]
    (row,) = torch_train.rows(shapes, result)
    assert all(ms > 0 for ms in row["ms"].values()) and row["speedup"] > 0
    losses = row["losses"]
    assert len(losses["torch"]) == torch_train.CHECK_STEPS
    assert np.allclose(losses["torch"], losses["fastrnn.torch"], rtol=torch_train.LOSS_RTOL["float32"], atol=0)
    assert "fastrnn.torch ms" in torch_train.table(torch_train.rows(shapes, result), markdown=True)


def test_loss_mismatch_is_caught():
    losses = {"torch": {"tiny": [6.9, 6.8]}, "fastrnn.torch": {"tiny": [6.9, 6.85]}}
    with pytest.raises(torch_train.LossMismatch):
        torch_train.check_losses(losses, "float32")
    losses["fastrnn.torch"]["tiny"] = [6.9, 6.8 * (1 + 1e-6)]
    torch_train.check_losses(losses, "float32")
