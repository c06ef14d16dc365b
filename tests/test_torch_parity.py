"""fastrnn.GRU / fastrnn.RNN against torch.nn.GRU / torch.nn.RNN on the same weights (SPEC §5):
outputs, h_n, dx, dh0 and every parameter gradient; float64 <= 1e-10, float32 <= 1e-4 relative.

torch's GRU is reset_after=True only; reset_after=False is checked against the reference elsewhere.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

import fastrnn  # noqa: E402

BACKENDS = fastrnn.backends()
DTYPES = [np.float64, np.float32]
TOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-4}
TORCH_DTYPE = {np.dtype(np.float64): torch.float64, np.dtype(np.float32): torch.float32}


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    nb = np.linalg.norm(b)
    diff = np.linalg.norm(a - b)
    return diff / nb if nb > 0 else diff


def run_torch(mod, x, h0, lengths, R1, R2, batch_first):
    """Forward + backward of loss = sum(out*R1) + sum(h_n*R2) in torch; NumPy results."""
    dt = next(mod.parameters()).dtype
    xt = torch.tensor(x, dtype=dt, requires_grad=True)
    ht = torch.tensor(h0, dtype=dt, requires_grad=True)
    T = x.shape[1] if batch_first else x.shape[0]
    if lengths is None:
        out, h_n = mod(xt, ht)
    else:
        packed = pack_padded_sequence(xt, torch.as_tensor(lengths, dtype=torch.int64),
                                      batch_first=batch_first, enforce_sorted=False)
        out_p, h_n = mod(packed, ht)
        out, _ = pad_packed_sequence(out_p, batch_first=batch_first, total_length=T)
    loss = (out * torch.tensor(R1, dtype=dt)).sum() + (h_n * torch.tensor(R2, dtype=dt)).sum()
    mod.zero_grad()
    loss.backward()
    grads = {k: p.grad.detach().numpy().copy() for k, p in mod.named_parameters()}
    return (out.detach().numpy(), h_n.detach().numpy(), xt.grad.numpy(), ht.grad.numpy(), grads)


def compare(cls_name, backend, dtype, *, I=5, H=7, T=6, B=4, num_layers=1, bidirectional=False,
            batch_first=False, bias=True, nonlinearity="tanh", give_h0=False, lengths=None, seed=0):
    dtype = np.dtype(dtype)
    torch.manual_seed(seed)
    kw = dict(num_layers=num_layers, bias=bias, batch_first=batch_first, bidirectional=bidirectional)
    if cls_name == "GRU":
        tmod = torch.nn.GRU(I, H, **kw)
        layer = fastrnn.GRU(I, H, dtype=dtype, seed=seed + 1, backend=backend, **kw)
    else:
        tmod = torch.nn.RNN(I, H, nonlinearity=nonlinearity, **kw)
        layer = fastrnn.RNN(I, H, nonlinearity=nonlinearity, dtype=dtype, seed=seed + 1,
                            backend=backend, **kw)
    tmod = tmod.to(TORCH_DTYPE[dtype])
    assert list(layer.state_dict()) == list(tmod.state_dict())    # same names, same order
    layer.load_state_dict(tmod.state_dict())                       # torch tensors accepted
    for k, v in tmod.state_dict().items():
        np.testing.assert_array_equal(layer.parameters()[k], v.numpy())

    rng = np.random.default_rng(seed + 100)
    D = 2 if bidirectional else 1
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I)).astype(dtype)
    h0 = (rng.standard_normal((num_layers * D, B, H)) if give_h0
          else np.zeros((num_layers * D, B, H))).astype(dtype)
    out_shape = (B, T, D * H) if batch_first else (T, B, D * H)
    R1 = rng.standard_normal(out_shape).astype(dtype)
    R2 = rng.standard_normal((num_layers * D, B, H)).astype(dtype)

    t_out, t_hn, t_dx, t_dh0, t_grads = run_torch(tmod, x, h0, lengths, R1, R2, batch_first)

    out, h_n = layer(x, h0 if give_h0 else None, lengths=lengths)
    dx, dh0 = layer.backward(R1, R2)
    assert out.dtype == dtype and dx.dtype == dtype
    tol = TOL[dtype]
    results = {"out": (out, t_out), "h_n": (h_n, t_hn), "dx": (dx, t_dx), "dh0": (dh0, t_dh0)}
    results.update({"grad " + k: (layer.grads[k], t_grads[k]) for k in t_grads})
    assert set(layer.grads) == set(t_grads)
    errors = {k: rel_err(a, b) for k, (a, b) in results.items()}
    bad = {k: e for k, e in errors.items() if not e <= tol}
    assert not bad, f"relative errors above {tol}: {bad}"
    if lengths is not None:  # padded outputs are zero on both sides
        tm = out.transpose(1, 0, 2) if batch_first else out
        for b, n in enumerate(lengths):
            assert np.all(tm[n:, b] == 0)
    return errors


CASES = {
    "single": dict(),
    "multi_layer": dict(num_layers=3),
    "bidirectional": dict(bidirectional=True),
    "multi_bidir_batch_first": dict(num_layers=2, bidirectional=True, batch_first=True, give_h0=True),
    "batch_first": dict(batch_first=True),
    "no_bias": dict(bias=False, num_layers=2),
    "h0": dict(give_h0=True, num_layers=2),
    "lengths": dict(lengths=[6, 2, 5, 1]),
    "lengths_bidir_multi": dict(lengths=[3, 6, 1, 4], num_layers=2, bidirectional=True, give_h0=True),
    "lengths_batch_first_bidir": dict(lengths=[2, 5, 6, 6], bidirectional=True, batch_first=True),
    "long_sequence": dict(T=40, B=3, H=16, I=3),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("cls_name", ["GRU", "RNN"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_fixed_cases(backend, dtype, cls_name, case):
    compare(cls_name, backend, dtype, **CASES[case])


RELU_CASES = {
    "relu": dict(),
    "relu_multi_bidir_lengths": dict(num_layers=2, bidirectional=True, lengths=[1, 6, 4, 3], give_h0=True),
    "relu_no_bias_batch_first": dict(bias=False, batch_first=True),
}


@pytest.mark.parametrize("case", list(RELU_CASES))
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_relu_cases(backend, dtype, case):
    compare("RNN", backend, dtype, nonlinearity="relu", **RELU_CASES[case])


def _random_mix(i):
    rng = np.random.default_rng(1000 + i)
    cls_name = ["GRU", "RNN"][i % 2]
    T, B = int(rng.integers(1, 9)), int(rng.integers(1, 6))
    kw = dict(I=int(rng.integers(1, 9)), H=int(rng.integers(1, 10)), T=T, B=B,
              num_layers=int(rng.integers(1, 4)), bidirectional=bool(rng.integers(2)),
              batch_first=bool(rng.integers(2)), bias=bool(rng.integers(2)),
              give_h0=bool(rng.integers(2)), seed=i)
    if cls_name == "RNN":
        kw["nonlinearity"] = ["tanh", "relu"][int(rng.integers(2))]
    if rng.integers(2):
        kw["lengths"] = rng.integers(1, T + 1, size=B).tolist()   # torch refuses length 0
    return cls_name, kw


RANDOM_MIXES = [_random_mix(i) for i in range(12)]


@pytest.mark.parametrize("mix", range(len(RANDOM_MIXES)))
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_random_option_mixes(backend, dtype, mix):
    cls_name, kw = RANDOM_MIXES[mix]
    compare(cls_name, backend, dtype, **kw)


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_length_sequence_matches_torch_on_the_rest(backend):
    """torch cannot pack a length-0 sequence; fastrnn can: the other sequences must agree with
    torch run on them alone, and the empty one keeps h0 with zero output."""
    torch.manual_seed(0)
    tmod = torch.nn.GRU(3, 4, num_layers=2, bidirectional=True).double()
    layer = fastrnn.GRU(3, 4, num_layers=2, bidirectional=True, dtype=np.float64, backend=backend)
    layer.load_state_dict(tmod.state_dict())
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3, 3))
    h0 = rng.standard_normal((4, 3, 4))
    lengths = [5, 0, 3]
    out, h_n = layer(x, h0, lengths=lengths)
    assert np.all(out[:, 1] == 0)
    np.testing.assert_array_equal(h_n[:, 1], h0[:, 1])
    keep = [0, 2]
    packed = pack_padded_sequence(torch.tensor(x[:, keep]), torch.tensor([5, 3]), enforce_sorted=False)
    t_out, t_hn = tmod(packed, torch.tensor(h0[:, keep]))
    t_out, _ = pad_packed_sequence(t_out, total_length=5)
    assert rel_err(out[:, keep], t_out.detach().numpy()) <= 1e-10
    assert rel_err(h_n[:, keep], t_hn.detach().numpy()) <= 1e-10


@pytest.mark.parametrize("backend", BACKENDS)
def test_load_state_dict_from_torch_casts_dtype(backend):
    tmod = torch.nn.RNN(3, 4, num_layers=2)           # float32 tensors
    layer = fastrnn.RNN(3, 4, num_layers=2, dtype=np.float64, backend=backend)
    layer.load_state_dict(tmod.state_dict())
    for k, v in tmod.state_dict().items():
        assert layer.parameters()[k].dtype == np.float64
        np.testing.assert_array_equal(layer.parameters()[k], v.double().numpy())
    # parameters that require grad are accepted too (named_parameters, not state_dict)
    layer.load_state_dict(dict(tmod.named_parameters()))
