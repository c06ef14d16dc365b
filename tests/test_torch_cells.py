"""fastrnn.torch.GRUCell / RNNCell against torch.nn.GRUCell / RNNCell on the same weights (SPEC §5
tolerances): one step, an unrolled loop trained by autograd, convert / to_torch, constructor."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fastrnn.torch as ft  # noqa: E402

from test_torch_modules import TOL, rel_err  # noqa: E402

DTYPES = [torch.float64, torch.float32]
CELLS = [("GRUCell", {}), ("RNNCell", {}), ("RNNCell", {"nonlinearity": "relu"}), ("GRUCell", {"bias": False}),
         ("RNNCell", {"bias": False})]


def twins(kind, I, H, dtype, **kw):
    torch.manual_seed(0)
    tm = getattr(torch.nn, kind)(I, H, dtype=dtype, **kw)
    fm = ft.convert(tm)
    assert type(fm) is getattr(ft, kind)
    assert all(a is b for a, b in zip(tm.parameters(), fm.parameters()))
    return tm, fm


def unrolled(cell, xs, h0):
    """h after every step of a loop over xs, and the gradients of a random loss over all of them."""
    xs = xs.detach().clone().requires_grad_(True)
    h = None if h0 is None else h0.detach().clone().requires_grad_(True)
    cell.zero_grad()
    hs, state = [], h
    for x in xs:
        state = cell(x, state)
        hs.append(state)
    hs = torch.stack(hs)
    R = torch.randn(hs.shape, generator=torch.Generator().manual_seed(3), dtype=hs.dtype)
    (hs * R).sum().backward()
    res = {"hs": hs, "dx": xs.grad, **{k: p.grad.clone() for k, p in cell.named_parameters()}}
    if h is not None:
        res["dh0"] = h.grad
    return res


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("kind,kw", CELLS)
@pytest.mark.parametrize("give_h0", [False, True])
@pytest.mark.parametrize("batched", [True, False])
def test_unrolled_loop_matches_torch(kind, kw, dtype, give_h0, batched):
    tm, fm = twins(kind, 3, 5, dtype, **kw)
    g = torch.Generator().manual_seed(2)
    shape = (6, 4, 3) if batched else (6, 3)
    xs = torch.randn(shape, generator=g, dtype=dtype)
    h0 = torch.randn(shape[1:-1] + (5,), generator=g, dtype=dtype) if give_h0 else None
    a, b = unrolled(tm, xs, h0), unrolled(fm, xs, h0)
    assert a.keys() == b.keys()
    for k in a:
        assert rel_err(b[k], a[k]) <= TOL[dtype], (k, rel_err(b[k], a[k]))


def test_one_step_is_the_layer_with_T_1():
    fm = ft.GRUCell(3, 4, dtype=torch.float64)
    layer = ft.GRU(3, 4, dtype=torch.float64)
    layer.load_state_dict({k + "_l0": v for k, v in fm.state_dict().items()})
    x, h = torch.randn(2, 3, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64)
    assert torch.equal(fm(x, h), layer(x[None], h[None])[1][0])


def test_no_grad_step_keeps_nothing_and_matches():
    fm = ft.RNNCell(3, 4)
    x = torch.randn(2, 3)
    a = fm(x)
    with torch.no_grad():
        b = fm(x)
    assert torch.equal(a, b) and b.grad_fn is None and a.grad_fn is not None


def test_constructor_init_repr_and_names():
    for kind, kw in CELLS:
        tmod = getattr(torch.nn, kind)(3, 5, **kw)
        fmod = getattr(ft, kind)(3, 5, **kw)
        assert [(k, v.shape) for k, v in tmod.named_parameters()] == [(k, v.shape) for k, v in fmod.named_parameters()]
        assert repr(tmod) == repr(fmod)
        assert (fmod.bias_ih is None) == (not kw.get("bias", True))
        assert all(p.abs().max() <= 1 / 5 ** 0.5 for p in fmod.parameters())
    assert "reset_after=False" in repr(ft.GRUCell(3, 5, reset_after=False))
    assert ft.RNNCell(2, 3, dtype=torch.float64).weight_hh.dtype == torch.float64
    with pytest.raises(ValueError, match="nonlinearity"):
        ft.RNNCell(2, 3, nonlinearity="sigmoid")
    with pytest.raises(TypeError, match="hidden_size"):
        ft.GRUCell(2, 3.0)


def test_convert_cells_in_a_model_and_back():
    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = torch.nn.GRUCell(3, 4)
            self.dec = torch.nn.RNNCell(4, 4, nonlinearity="relu")

        def forward(self, xs):
            h = g = None
            for x in xs:
                h = self.enc(x, h)
                g = self.dec(h, g)
            return g.sum()

    torch.manual_seed(0)
    m = Model().double()
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    xs = torch.randn(5, 2, 3, dtype=torch.float64)
    fast = ft.convert(m)
    assert type(fast.enc) is ft.GRUCell and type(fast.dec) is ft.RNNCell
    assert type(m.enc) is torch.nn.GRUCell          # inplace=False left the original as it was
    ref = Model().double()
    ref.load_state_dict(m.state_dict())
    ref_opt = torch.optim.Adam(ref.parameters(), lr=1e-2)
    for _ in range(3):
        for model, o in ((fast, opt), (ref, ref_opt)):
            o.zero_grad()
            loss = model(xs)
            loss.backward()
            o.step()
        assert abs(fast(xs).item() - ref(xs).item()) <= 1e-9 * abs(ref(xs).item())
    back = ft.to_torch(fast)
    assert type(back.enc) is torch.nn.GRUCell and back.enc.weight_ih is fast.enc.weight_ih


def test_gradcheck_float64():
    """Through torch.func.functional_call, so that the parameters are gradcheck's inputs."""
    for cell in (ft.GRUCell(2, 3, dtype=torch.float64), ft.RNNCell(2, 3, dtype=torch.float64)):
        names = [n for n, _ in cell.named_parameters()]
        x = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
        h = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
        params = [p.detach().clone().requires_grad_() for p in cell.parameters()]
        assert torch.autograd.gradcheck(
            lambda x, h, *p: torch.func.functional_call(cell, dict(zip(names, p)), (x, h)), (x, h, *params))


def test_long_loop_memory_is_torchs_graph():
    """What a step keeps for its backward lives in torch's graph, nothing on the side: the states and
    gates a step saved are freed by the backward that used them."""
    import weakref
    fm = ft.GRUCell(8, 16)
    x = torch.randn(4, 8)
    h, saved = None, []
    for _ in range(50):
        h = fm(x, h)
        saved.append(weakref.ref(h.grad_fn.saved_tensors[6]))      # the step's (T + 1, B, H) states
    assert all(r() is not None for r in saved)
    h.sum().backward()
    assert all(r() is None for r in saved)
    assert np.isfinite(fm.weight_hh.grad.numpy()).all()


@pytest.mark.parametrize("kind", ["GRUCell", "RNNCell"])
def test_a_step_runs_its_own_way_unless_it_must_convert(kind, monkeypatch):
    """A plain step (contiguous tensors of the parameters' dtype) runs _step's autograd.Function; a
    non-contiguous input or state goes the layer's way, which copies it, and gives torch's results."""
    from fastrnn.torch import _ops, _step
    ways = []
    real_apply, real_layer = _step._apply, getattr(_ops, kind[:-4].lower())
    monkeypatch.setattr(_step, "_apply", lambda *a: ways.append("step") or real_apply(*a))
    monkeypatch.setattr(_ops, kind[:-4].lower(), lambda *a: ways.append("layer") or real_layer(*a))
    tm, fm = twins(kind, 3, 5, torch.float64)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(4, 6, generator=g, dtype=torch.float64)[:, ::2].requires_grad_(True)
    h = torch.randn(5, 4, generator=g, dtype=torch.float64).t().requires_grad_(True)
    assert not x.is_contiguous() and not h.is_contiguous()
    for args in ((x.contiguous(), h.contiguous()), (x, h)):
        ways.clear()
        out = fm(*args)
        assert ways == (["step"] if args[0].is_contiguous() else ["layer"])
        expect = tm(*args)
        assert rel_err(out, expect) <= TOL[torch.float64]
        grads = torch.autograd.grad(out.sum(), (x, h, *fm.parameters()))
        expect = torch.autograd.grad(expect.sum(), (x, h, *tm.parameters()))
        for a, b in zip(grads, expect):
            assert rel_err(a, b) <= TOL[torch.float64]


@pytest.mark.parametrize("kind", ["GRUCell", "RNNCell"])
def test_a_parameter_of_another_dtype_or_shape_is_refused_by_the_layers_rules(kind):
    fm = getattr(ft, kind)(3, 4)
    with torch.no_grad():
        fm.bias_hh.data = fm.bias_hh.data.double()
    with pytest.raises(TypeError, match="b_hh"):
        fm(torch.randn(2, 3))
    fm = getattr(ft, kind)(3, 4)
    fm.weight_hh.data = fm.weight_hh.data[:, :3].contiguous()
    with pytest.raises(ValueError, match="w_hh"):
        fm(torch.randn(2, 3))


def test_a_nonlinearity_changed_to_nonsense_after_construction_is_refused():
    fm = ft.RNNCell(3, 4)
    fm.nonlinearity = "sigmoid"
    with pytest.raises(ValueError, match="nonlinearity"):
        fm(torch.randn(2, 3))


def test_under_a_functorch_transform_the_step_takes_torchs_full_apply():
    """_step applies its Function straight through torch's C base unless a functorch transform is
    active; under one (torch.func.grad) the full apply runs and refuses it clearly, as before."""
    cell = ft.RNNCell(3, 4, dtype=torch.float64)
    x = torch.randn(2, 3, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="functorch transforms"):
        torch.func.grad(lambda x: cell(x).sum())(x)
