"""fastrnn.torch.GRU / RNN against torch.nn.GRU / RNN on the same weights (SPEC §5 tolerances):
outputs, h_n and the gradients of input, hx and every parameter; the operators under opcheck."""
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence  # noqa: E402

import fastrnn.torch as ft  # noqa: E402

TOL = {torch.float64: 1e-10, torch.float32: 1e-4}


def rel_err(a, b):
    a, b = a.detach().double(), b.detach().double()
    assert a.shape == b.shape, (a.shape, b.shape)
    nb = b.norm().item()
    d = (a - b).norm().item()
    return d / nb if nb > 0 else d


def twins(kind, I, H, dtype, nonlinearity="tanh", **kw):
    torch.manual_seed(0)
    if kind == "GRU":
        tm = torch.nn.GRU(I, H, dtype=dtype, **kw)
    else:
        tm = torch.nn.RNN(I, H, nonlinearity=nonlinearity, dtype=dtype, **kw)
    fm = ft.convert(tm)
    assert type(fm) is getattr(ft, kind)
    return tm, fm


def grads_of(mod, x, hx, lengths=None, packed=False, enforce_sorted=True, batch_first=False):
    """out, h_n, and the gradients of x, hx and every parameter of a random linear loss."""
    x = x.detach().clone().requires_grad_(True)
    hx_ = None if hx is None else hx.detach().clone().requires_grad_(True)
    mod.zero_grad()
    if packed:
        inp = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=enforce_sorted)
        out_p, h_n = mod(inp, hx_)
        assert isinstance(out_p, PackedSequence)
        assert torch.equal(out_p.batch_sizes, inp.batch_sizes)
        for a, b in ((out_p.sorted_indices, inp.sorted_indices), (out_p.unsorted_indices, inp.unsorted_indices)):
            assert (a is None and b is None) or torch.equal(a, b)
        out, _ = pad_packed_sequence(out_p, batch_first=batch_first)
    else:
        out, h_n = mod(x, hx_)
    g = torch.Generator().manual_seed(1)
    R1 = torch.randn(out.shape, generator=g, dtype=out.dtype)
    R2 = torch.randn(h_n.shape, generator=g, dtype=out.dtype)
    ((out * R1).sum() + (h_n * R2).sum()).backward()
    res = {"out": out, "h_n": h_n, "dx": x.grad}
    if hx_ is not None:
        res["dhx"] = hx_.grad
    for k, p in mod.named_parameters():
        res[k] = p.grad.clone()
    return res


def compare(tm, fm, dtype, **kw):
    a, b = grads_of(tm, **kw), grads_of(fm, **kw)
    assert a.keys() == b.keys()
    for k in a:
        assert rel_err(b[k], a[k]) <= TOL[dtype], (k, rel_err(b[k], a[k]))


DTYPES = [torch.float64, torch.float32]
CASES = [  # (kind, nonlinearity, num_layers, bidirectional, batch_first, give_hx)
    ("GRU", "tanh", 1, False, False, False),
    ("GRU", "tanh", 2, True, False, True),
    ("GRU", "tanh", 2, False, True, True),
    ("GRU", "tanh", 1, True, True, False),
    ("RNN", "tanh", 1, False, False, True),
    ("RNN", "relu", 2, True, True, False),
    ("RNN", "tanh", 2, True, False, True),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("kind,nl,L,bidir,bf,give_hx", CASES)
def test_parity_padded(kind, nl, L, bidir, bf, give_hx, dtype):
    I, H, T, B = 3, 5, 6, 4
    tm, fm = twins(kind, I, H, dtype, nonlinearity=nl, num_layers=L, bidirectional=bidir, batch_first=bf)
    g = torch.Generator().manual_seed(2)
    x = torch.randn((B, T, I) if bf else (T, B, I), generator=g, dtype=dtype)
    hx = torch.randn(L * (2 if bidir else 1), B, H, generator=g, dtype=dtype) if give_hx else None
    compare(tm, fm, dtype, x=x, hx=hx)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("kind", ["GRU", "RNN"])
@pytest.mark.parametrize("enforce_sorted", [True, False])
@pytest.mark.parametrize("bidir,bf,give_hx", [(True, False, True), (False, True, False), (True, True, False)])
def test_parity_packed(kind, enforce_sorted, bidir, bf, give_hx, dtype):
    I, H, T, B = 3, 4, 5, 4
    L = 2
    tm, fm = twins(kind, I, H, dtype, num_layers=L, bidirectional=bidir, batch_first=bf)
    g = torch.Generator().manual_seed(3)
    lengths = torch.tensor([5, 3, 3, 1]) if enforce_sorted else torch.tensor([2, 5, 1, 3])
    x = torch.randn((B, T, I) if bf else (T, B, I), generator=g, dtype=dtype)
    hx = torch.randn(L * (2 if bidir else 1), B, H, generator=g, dtype=dtype) if give_hx else None
    compare(tm, fm, dtype, x=x, hx=hx, lengths=lengths, packed=True, enforce_sorted=enforce_sorted,
            batch_first=bf)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("kind", ["GRU", "RNN"])
def test_parity_unbatched_and_length_one(kind, dtype):
    tm, fm = twins(kind, 3, 4, dtype, num_layers=2, bidirectional=True)
    g = torch.Generator().manual_seed(4)
    compare(tm, fm, dtype, x=torch.randn(5, 3, generator=g, dtype=dtype),
            hx=torch.randn(4, 4, generator=g, dtype=dtype))              # unbatched (T, I), hx (L*D, H)
    compare(tm, fm, dtype, x=torch.randn(1, 2, 3, generator=g, dtype=dtype), hx=None)  # T = 1
    compare(tm, fm, dtype, x=torch.randn(4, 3, 3, generator=g, dtype=dtype), hx=None,  # a length-1 sequence
            lengths=torch.tensor([4, 1, 1]), packed=True)


def test_lengths_extension_matches_packed():
    """forward(x, lengths=) on padded input equals torch on the PackedSequence (padding -> 0)."""
    tm, fm = twins("GRU", 3, 4, torch.float64, bidirectional=True)
    x = torch.randn(5, 3, 3, dtype=torch.float64)
    lengths = torch.tensor([2, 5, 3])
    out_t, h_t = tm(pack_padded_sequence(x, lengths, enforce_sorted=False))
    out_t, _ = pad_packed_sequence(out_t, total_length=5)
    out_f, h_f = fm(x, lengths=lengths)
    assert rel_err(out_f, out_t) <= 1e-10 and rel_err(h_f, h_t) <= 1e-10


def test_no_grad_and_eval_same_outputs():
    tm, fm = twins("GRU", 3, 4, torch.float32, num_layers=2)
    x = torch.randn(5, 2, 3)
    out, h = fm(x)
    with torch.no_grad():
        out2, h2 = fm(x)
    assert torch.equal(out, out2) and torch.equal(h, h2) and out2.grad_fn is None


def test_dropout_uses_torch_rng():
    torch.manual_seed(0)
    m = ft.GRU(3, 4, num_layers=2, dropout=0.5, dtype=torch.float64)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    torch.manual_seed(7)
    a, _ = m(x)
    torch.manual_seed(7)
    b, _ = m(x)
    torch.manual_seed(8)
    c, _ = m(x)
    assert torch.equal(a, b) and not torch.equal(a, c)
    m.eval()
    d, _ = m(x)
    e, _ = m(x)
    assert torch.equal(d, e)


def test_constructor_init_repr_and_names():
    for kind, kw in (("GRU", {}), ("RNN", {"nonlinearity": "relu"})):
        tmod = getattr(torch.nn, kind)(3, 5, num_layers=2, bidirectional=True, bias=False, **kw)
        fmod = getattr(ft, kind)(3, 5, num_layers=2, bidirectional=True, bias=False, **kw)
        assert [(k, v.shape) for k, v in tmod.named_parameters()] == [(k, v.shape) for k, v in fmod.named_parameters()]
        bound = 1 / 5 ** 0.5
        assert all(p.abs().max() <= bound for p in fmod.parameters())
        assert fmod.weight_ih_l0.dtype == torch.get_default_dtype()
        fmod.flatten_parameters()
    assert repr(ft.GRU(3, 5, num_layers=2, batch_first=True)) == repr(torch.nn.GRU(3, 5, num_layers=2, batch_first=True))
    assert "reset_after=False" in repr(ft.GRU(3, 5, reset_after=False))
    assert ft.GRU(2, 3, dtype=torch.float64).weight_hh_l0.dtype == torch.float64


def _op_samples():
    g = torch.Generator().manual_seed(5)
    T, B, I, H = 3, 2, 3, 4
    for dtype in (torch.float64, torch.float32):
        def r(*s):
            return torch.randn(*s, generator=g, dtype=dtype, requires_grad=True)
        x = r(T, B, I)
        lengths = torch.tensor([3, 1])
        for G, op, opt in ((3, torch.ops.fastrnn.gru_forward, True), (1, torch.ops.fastrnn.rnn_forward, "tanh")):
            w = (r(G * H, I), r(G * H, H), r(G * H), r(G * H))
            yield op, (x, r(B, H), *w, None, opt, False, True)
            yield op, (x, None, w[0], w[1], None, None, lengths, opt, True, True)
            yield op, (x, r(B, H), *w, lengths, opt, True, False)


@pytest.mark.parametrize("i", range(12))
def test_opcheck_forward(i):
    op, args = list(_op_samples())[i]
    torch.library.opcheck(op, args)


def test_opcheck_backward():
    g = torch.Generator().manual_seed(6)
    T, B, I, H = 3, 2, 3, 4
    x = torch.randn(T, B, I, generator=g, dtype=torch.float64)
    for G in (3, 1):
        w_ih, w_hh = torch.randn(G * H, I, dtype=torch.float64), torch.randn(G * H, H, dtype=torch.float64)
        lengths = torch.tensor([3, 2])
        d_out, d_hn = torch.randn(T, B, H, dtype=torch.float64), torch.randn(B, H, dtype=torch.float64)
        if G == 3:
            out, h_n, states, gates = torch.ops.fastrnn.gru_forward(x, None, w_ih, w_hh, None, None, lengths,
                                                                    True, False, True)
            torch.library.opcheck(torch.ops.fastrnn.gru_backward,
                                  (d_out, d_hn, x, w_ih, w_hh, states, gates, lengths, True, False))
        else:
            out, h_n, states = torch.ops.fastrnn.rnn_forward(x, None, w_ih, w_hh, None, None, lengths,
                                                             "relu", True, True)
            torch.library.opcheck(torch.ops.fastrnn.rnn_backward,
                                  (d_out, d_hn, x, w_ih, w_hh, states, lengths, "relu", True))


def test_gradcheck_ops():
    """The operators' backward against finite differences (float64, tiny sizes)."""
    g = torch.Generator().manual_seed(7)
    T, B, I, H = 3, 2, 2, 3

    def r(*s):
        return (0.5 * torch.randn(*s, generator=g, dtype=torch.float64)).requires_grad_(True)
    lengths = torch.tensor([3, 2])
    x, h0 = r(T, B, I), r(B, H)
    w = (r(3 * H, I), r(3 * H, H), r(3 * H), r(3 * H))
    assert torch.autograd.gradcheck(
        lambda *a: torch.ops.fastrnn.gru_forward(*a, lengths, True, True, True)[:2], (x, h0, *w))
    w = (r(H, I), r(H, H), r(H), r(H))
    assert torch.autograd.gradcheck(
        lambda *a: torch.ops.fastrnn.rnn_forward(*a, lengths, "tanh", False, True)[:2], (x, h0, *w))


def test_import_fastrnn_does_not_import_torch():
    code = "import sys, fastrnn; import fastrnn.functional, fastrnn.models; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_gradients_go_through_autograd_hooks():
    """Parameter hooks and the module's full backward hook see fastrnn's gradients (DDP relies on
    the former), and a hook's change reaches the input's gradient."""
    m = ft.GRU(3, 4, num_layers=2, dtype=torch.float64)
    seen = []
    for name, p in m.named_parameters():
        p.register_hook(lambda g, name=name: seen.append(name))
    module_grads = []
    m.register_full_backward_hook(lambda mod, gin, gout: module_grads.append(gin[0]))
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    x.register_hook(lambda g: g * 0)
    out, _ = m(x)
    out.sum().backward()
    assert sorted(seen) == sorted(n for n, _ in m.named_parameters())
    assert len(module_grads) == 1 and module_grads[0].shape == x.shape
    assert torch.count_nonzero(x.grad) == 0
