"""fastrnn.torch when things are not the common case: bad input (errors naming the argument, of the
kinds both fastrnn and torch raise), what the kernels do not cover (torch's own implementation with
one warning, or a clear error), double backward, deepcopy / pickle, dropout in train vs eval mode,
and threads (the count the kernels use, one OpenMP runtime whichever is imported first)."""
import copy
import io
import os
import subprocess
import sys
import warnings

import pytest

torch = pytest.importorskip("torch")

import fastrnn  # noqa: E402
import fastrnn.torch as ft  # noqa: E402
from fastrnn import _config  # noqa: E402
from fastrnn.torch import _ops  # noqa: E402

from test_torch_modules import rel_err  # noqa: E402

LAYERS = [lambda **kw: ft.GRU(3, 4, **kw), lambda **kw: ft.RNN(3, 4, **kw)]
CELLS = [lambda **kw: ft.GRUCell(3, 4, **kw), lambda **kw: ft.RNNCell(3, 4, **kw)]


# ---- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize("make", LAYERS, ids=["GRU", "RNN"])
def test_layer_bad_input(make):
    m = make()
    with pytest.raises(ft.DtypeError, match="input.*float32.*float64"):
        m(torch.randn(5, 2, 3, dtype=torch.float64))
    with pytest.raises(ft.DtypeError, match="hx"):
        m(torch.randn(5, 2, 3), torch.randn(1, 2, 4, dtype=torch.float64))
    with pytest.raises(ft.ArgumentError, match="input_size=3"):
        m(torch.randn(5, 2, 2))
    with pytest.raises(ft.ArgumentError, match="input.*4-D|input.*shape"):
        m(torch.randn(5, 2, 2, 3))
    with pytest.raises(ft.ArgumentError, match=r"hx: expected shape \(1, 2, 4\)"):
        m(torch.randn(5, 2, 3), torch.randn(1, 3, 4))
    with pytest.raises(ft.ArgumentError, match="input.*meta"):
        m(torch.randn(5, 2, 3, device="meta"))
    with pytest.raises(TypeError, match="input: expected a torch.Tensor"):
        m([[1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match="lengths"):
        m(torch.randn(5, 2, 3), lengths=torch.tensor([5, 6]))
    with pytest.raises(ValueError, match="lengths"):
        m(torch.randn(5, 2, 3), lengths=torch.tensor([5]))
    with pytest.raises(ValueError, match="lengths: expected an integer"):
        m(torch.randn(5, 2, 3), lengths=torch.tensor([5.0, 2.0]))


def test_error_kinds_are_torchs_and_fastrnns():
    """Code written for torch (catching RuntimeError / ValueError) and for fastrnn (ValueError /
    TypeError) both catch them."""
    assert issubclass(ft.ArgumentError, ValueError) and issubclass(ft.ArgumentError, RuntimeError)
    assert all(issubclass(ft.DtypeError, k) for k in (TypeError, ValueError, RuntimeError))


@pytest.mark.parametrize("make", CELLS, ids=["GRUCell", "RNNCell"])
def test_cell_bad_input(make):
    c = make()
    with pytest.raises(ft.DtypeError, match="input"):
        c(torch.randn(2, 3, dtype=torch.float64))
    with pytest.raises(ft.ArgumentError, match="input_size=3"):
        c(torch.randn(2, 5))
    with pytest.raises(ft.ArgumentError, match="input.*shape"):
        c(torch.randn(1, 2, 3))
    with pytest.raises(ft.ArgumentError, match=r"hx: expected shape \(2, 4\)"):
        c(torch.randn(2, 3), torch.randn(3, 4))
    with pytest.raises(ft.ArgumentError, match=r"hx: expected shape \(4,\)"):
        c(torch.randn(3), torch.randn(1, 4))
    with pytest.raises(ft.DtypeError, match="hx"):
        c(torch.randn(2, 3), torch.randn(2, 4, dtype=torch.float64))


def test_constructor_refusals():
    with pytest.raises(TypeError, match="dtype"):
        ft.GRU(3, 4, dtype=torch.int32)
    with pytest.raises(ValueError, match="hidden_size"):
        ft.GRU(3, 0)
    with pytest.raises(ValueError, match="dropout"):
        ft.RNN(3, 4, num_layers=2, dropout=1.5)
    with pytest.raises(TypeError, match="reset_after"):
        ft.GRUCell(3, 4, reset_after="no")


# ---- what the kernels do not cover -----------------------------------------------------------------

@pytest.mark.parametrize("kind", ["GRU", "RNN", "GRUCell", "RNNCell"])
def test_other_dtypes_run_torchs_implementation_with_one_warning(kind):
    torch.manual_seed(0)
    tm = getattr(torch.nn, kind)(3, 4).to(torch.bfloat16)
    fm = getattr(ft, kind)(3, 4).to(torch.bfloat16)
    fm.load_state_dict(tm.state_dict())
    x = torch.randn(5, 2, 3).to(torch.bfloat16)
    if kind.endswith("Cell"):
        x = x[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outs = [fm(x) for _ in range(3)]
    assert len(caught) == 1 and "torch's own implementation" in str(caught[0].message)
    assert caught[0].filename == __file__          # points at the caller's line
    expected = tm(x)
    for out in outs:
        a, b = (out[0], expected[0]) if isinstance(out, tuple) else (out, expected)
        assert a.dtype == torch.bfloat16 and torch.equal(a, b)


def test_meta_device_runs_torchs_implementation():
    with pytest.warns(UserWarning, match="meta"):
        out, h = ft.GRU(3, 4, device="meta", num_layers=2)(torch.randn(5, 2, 3, device="meta"))
    assert out.device.type == "meta" and out.shape == (5, 2, 4) and h.shape == (2, 2, 4)


def test_what_torch_has_not_is_refused_off_the_fast_path():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="reset_after=False"):
            ft.GRU(3, 4, reset_after=False).half()(torch.randn(5, 2, 3).half())
        with pytest.raises(ValueError, match="reset_after=False"):
            ft.GRUCell(3, 4, reset_after=False).half()(torch.randn(2, 3).half())
        with pytest.raises(ValueError, match="lengths"):
            ft.GRU(3, 4).half()(torch.randn(5, 2, 3).half(), lengths=torch.tensor([5, 2]))


@pytest.mark.parametrize("kind", ["GRU", "RNN", "GRUCell", "RNNCell"])
def test_double_backward_is_an_error_not_a_silent_zero(kind):
    m = getattr(ft, kind)(3, 4, dtype=torch.float64)
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    out = m(x[0]) if kind.endswith("Cell") else m(x)[0]
    gx, = torch.autograd.grad((out ** 2).sum(), x, create_graph=True)
    assert gx.requires_grad
    with pytest.raises(RuntimeError, match="double backward"):
        (gx ** 2).sum().backward()


def test_double_backward_through_the_operators_is_an_error():
    x = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    w_ih, w_hh = torch.randn(12, 3, dtype=torch.float64), torch.randn(12, 4, dtype=torch.float64)
    out = torch.ops.fastrnn.gru_forward(x, None, w_ih, w_hh, None, None, None, True, False, True)[0]
    gx, = torch.autograd.grad((out ** 2).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward"):
        gx.sum().backward()


@pytest.mark.parametrize("kind", ["GRU", "RNN", "GRUCell", "RNNCell"])
def test_an_input_or_weight_changed_in_place_before_backward_is_torchs_version_error(kind):
    """The backward reads x and the weights (the C cache holds views of them): a change in place
    between forward and backward is refused, as torch refuses it for its own layers."""
    for change in ("x", "weight_hh"):
        m = getattr(ft, kind)(3, 4, dtype=torch.float64)
        x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
        xi = x[0].clone() if kind.endswith("Cell") else x.clone()
        out = m(xi) if kind.endswith("Cell") else m(xi)[0]
        with torch.no_grad():
            (xi if change == "x" else getattr(m, change + ("" if kind.endswith("Cell") else "_l0"))).add_(1)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            out.sum().backward()


@pytest.mark.parametrize("kind", ["GRU", "RNN", "GRUCell", "RNNCell"])
def test_a_retained_graph_backpropagates_twice_to_the_same_gradients(kind):
    m = getattr(ft, kind)(3, 4, dtype=torch.float64)
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    out = m(x[0]) if kind.endswith("Cell") else m(x)[0]
    out.sum().backward(retain_graph=True)
    first = [p.grad.clone() for p in m.parameters()] + [x.grad.clone()]
    out.sum().backward()
    for g, p in zip(first, [*m.parameters(), x]):
        assert torch.equal(p.grad, 2 * g)


# ---- copies ---------------------------------------------------------------------------------------

def _model():
    torch.manual_seed(0)
    return ft.convert(torch.nn.Sequential(torch.nn.GRU(3, 4, num_layers=2, bidirectional=True)))


@pytest.mark.parametrize("how", ["deepcopy", "pickle", "torch.save"])
def test_copies_compute_the_same_and_own_their_parameters(how):
    import pickle
    models = [_model(), ft.GRUCell(3, 4), ft.RNN(3, 4, nonlinearity="relu"), ft.GRU(3, 4, reset_after=False)]
    for m in models:
        if how == "deepcopy":
            c = copy.deepcopy(m)
        elif how == "pickle":
            c = pickle.loads(pickle.dumps(m))
        else:
            buf = io.BytesIO()
            torch.save(m, buf)
            buf.seek(0)
            c = torch.load(buf, weights_only=False)
        assert type(c) is type(m) and repr(c) == repr(m)
        x = torch.randn(2, 3) if isinstance(m, ft.GRUCell) else torch.randn(5, 2, 3)
        a, b = m(x), c(x)
        a, b = (a[0], b[0]) if isinstance(a, tuple) else (a, b)
        assert torch.equal(a, b)
        assert all(p is not q for p, q in zip(m.parameters(), c.parameters()))
        b.sum().backward()
        assert all(p.grad is None for p in m.parameters())


# ---- dropout ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["GRU", "RNN"])
def test_dropout_train_draws_as_torch_eval_has_none(kind):
    torch.manual_seed(0)
    tm = getattr(torch.nn, kind)(3, 4, num_layers=3, dropout=0.5, bidirectional=True)
    fm = ft.convert(tm)
    x = torch.randn(5, 2, 3)
    torch.manual_seed(11)
    a, _ = tm(x)
    torch.manual_seed(11)
    b, _ = fm(x)
    assert rel_err(b, a) <= 1e-5                     # the same masks from torch's RNG
    no_dropout = ft.convert(getattr(torch.nn, kind)(3, 4, num_layers=3, bidirectional=True))
    no_dropout.load_state_dict(fm.state_dict())
    fm.eval()
    assert torch.equal(fm(x)[0], no_dropout(x)[0]) and torch.equal(fm(x)[0], fm(x)[0])
    fm.train()
    assert not torch.equal(fm(x)[0], no_dropout(x)[0])


# ---- threads --------------------------------------------------------------------------------------

@pytest.fixture
def default_threads(monkeypatch):
    """fastrnn's thread setting as if the user had chosen none; torch's put back afterwards."""
    monkeypatch.setitem(_config._state, "threads", None)
    monkeypatch.setitem(_config._state, "chosen", False)
    monkeypatch.delenv("FASTRNN_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _spy(monkeypatch):
    """The nthreads each kernel call of the operators gets."""
    seen, real = [], _ops._c()

    class Spy:
        def __getattr__(self, name):
            def call(*args, nthreads=None, **kw):
                seen.append(nthreads)
                return getattr(real, name)(*args, nthreads=nthreads, **kw)
            return call
    monkeypatch.setattr(_ops, "_c", lambda: Spy())
    return seen


def test_threads_follow_torch_unless_fastrnn_was_told(default_threads, monkeypatch, restore_threads):
    seen = _spy(monkeypatch)
    m = ft.GRU(3, 4)
    x = torch.randn(5, 2, 3, requires_grad=True)
    torch.set_num_threads(1)
    m(x)[0].sum().backward()
    assert seen == [1, 1]                            # forward and backward
    torch.set_num_threads(1000)
    assert _ops._nthreads() == fastrnn.max_threads() == _ops._CPUS
    fastrnn.set_num_threads(1)
    torch.set_num_threads(2)
    seen.clear()
    m(x)[0].sum().backward()
    assert seen == [1, 1]
    seen.clear()
    ft.GRUCell(3, 4)(x[0]).sum().backward()      # a cell's step (fastrnn/torch/_step.py) too
    assert seen == [1, 1]


def _python(code, tmp_path, **env):
    """Run `code` in a fresh interpreter, from a directory without the source tree (which would
    shadow the installed package); its output, or an assertion with its stderr."""
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, **env})
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_fastrnn_num_threads_counts_as_chosen(tmp_path):
    _python("import torch, fastrnn.torch as ft; from fastrnn.torch import _ops; torch.set_num_threads(2); "
            "assert _ops._nthreads() == 1, _ops._nthreads()", tmp_path, FASTRNN_NUM_THREADS="1")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
@pytest.mark.parametrize("order", ["import torch; import fastrnn.torch",
                                   "import fastrnn; fastrnn.backends(); import torch; import fastrnn.torch"])
def test_one_openmp_runtime_whichever_comes_first(order, tmp_path):
    """torch's wheel brings its own libgomp.so.1; the dynamic loader gives fastrnn's extension the one
    already loaded (same soname), so one thread pool serves both and they never run at once."""
    code = order + """
import torch, fastrnn.torch as ft
ft.GRU(3, 4)(torch.randn(5, 2, 3))[0].sum().backward()
runtimes = {l.split()[-1] for l in open('/proc/self/maps') if 'libgomp' in l or 'libiomp' in l or 'libomp' in l}
assert len(runtimes) <= 1, runtimes
print(len(runtimes))
"""
    out = _python(code, tmp_path)
    assert out.strip() in ("0", "1"), out
