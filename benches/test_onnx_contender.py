"""The ONNX Runtime contender of benches.contenders computes what fastrnn's GRU forward computes.

    pytest benches/test_onnx_contender.py

Same weights and inputs (workloads.make_inputs, plus a random h0 so that initial_h is checked too):
Y and Y_h against fastrnn.functional.gru_forward's out and h_n, float32 relative tolerance 1e-4
(SPEC §5). The RNN, training and float64 are Unsupported (gaps in the table).
"""
import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from fastrnn import functional as F  # noqa: E402
from benches import contenders, orchestrate, workloads  # noqa: E402

TOL = 1e-4


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.fixture(scope="module")
def ort_contender():
    contender = contenders.CONTENDERS["onnxruntime"]
    info = contender.setup(2)
    assert "onnxruntime" in info
    return contender


@pytest.mark.parametrize("shape", ["tiny", "7x3x5x6", "4x1x9x16"])
@pytest.mark.parametrize("random_h0", [False, True], ids=["h0=0", "h0=random"])
def test_gru_forward_matches_fastrnn(ort_contender, shape, random_h0):
    w = workloads.Workload("gru", shape, "fwd", "float32")
    inputs = workloads.make_inputs(w, seed=4)
    if random_h0:
        inputs = inputs._replace(h0=np.random.default_rng(5).standard_normal(inputs.h0.shape).astype(np.float32))
    y, y_h = ort_contender.build(w, inputs)()
    out, h_n, _ = F.gru_forward(*inputs[:6])
    T, B, _, H = w.dims
    assert y.shape == (T, 1, B, H) and y_h.shape == (1, B, H)
    assert y.dtype == np.float32
    assert rel_err(y[:, 0], out) <= TOL
    assert rel_err(y_h[0], h_n) <= TOL


def test_gate_order_matters(ort_contender):
    """Without the r, z, n -> z, r, h permutation the result would differ: the test can fail."""
    w = workloads.Workload("gru", "tiny", "fwd", "float32")
    inputs = workloads.make_inputs(w, seed=4)
    out, _, _ = F.gru_forward(*inputs[:6])
    H = w.dims.H
    swap = np.r_[H:2 * H, 0:H, 2 * H:3 * H]
    swapped = inputs._replace(w_ih=inputs.w_ih[swap], w_hh=inputs.w_hh[swap], b_ih=inputs.b_ih[swap],
                              b_hh=inputs.b_hh[swap])
    y, _ = ort_contender.build(w, swapped)()
    assert rel_err(y[:, 0], out) > 1e-2


@pytest.mark.parametrize("key,dtype", [("rnn:tiny:fwd", "float32"), ("gru:tiny:train", "float32"),
                                       ("rnn:tiny:train", "float32"), ("gru:tiny:fwd", "float64")])
def test_unsupported(ort_contender, key, dtype):
    w = workloads.Workload.from_key(key, dtype)
    with pytest.raises(contenders.Unsupported):
        ort_contender.build(w, workloads.make_inputs(w))


def test_worker_reports_gaps_not_errors():
    """Through the worker process, as benches.run uses it: GRU fwd timed, the rest unsupported."""
    results = orchestrate.measure({"onnxruntime": [workloads.Workload("gru", "tiny", "fwd"),
                                                   workloads.Workload("rnn", "tiny", "train")]},
                                  threads=1, rounds=1, min_time=0.01)
    assert results.time("onnxruntime", workloads.Workload("gru", "tiny", "fwd")) > 0
    assert results.time("onnxruntime", workloads.Workload("rnn", "tiny", "train")) is None
    assert not results.problems
