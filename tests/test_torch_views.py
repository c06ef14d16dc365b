"""fastrnn.torch's NumPy views of parameters, kept from call to call (_ops.param_view): reused while a
parameter keeps its storage, shape and dtype, remade when any changes (`p.data = ...`, resize_), never
kept for other tensors, and forgotten when the parameter is collected."""
import gc

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fastrnn.torch as ft  # noqa: E402
from fastrnn.torch import _ops  # noqa: E402


def test_a_parameter_view_is_kept_and_follows_in_place_changes():
    p = torch.nn.Parameter(torch.zeros(3, 4))
    v = _ops.param_view(p)
    assert _ops.param_view(p) is v
    with torch.no_grad():
        p.add_(1.5)                     # in place: the same memory, seen through the view
    assert _ops.param_view(p) is v and np.all(v == 1.5)


@pytest.mark.parametrize("change", ["data", "resize", "dtype"])
def test_a_new_storage_shape_or_dtype_makes_a_new_view(change):
    p = torch.nn.Parameter(torch.arange(16, dtype=torch.float64).reshape(4, 4), requires_grad=change != "resize")
    old = _ops.param_view(p)
    if change == "data":
        p.data = torch.full((4, 4), 7.0, dtype=torch.float64)
    elif change == "resize":
        p.resize_(2, 8)                 # same storage and address, another shape
        assert p.data_ptr() == old.ctypes.data
    else:
        p.data = p.data.view(torch.float32)     # same address, another dtype (and shape)
    v = _ops.param_view(p)
    assert v is not old and v.shape == tuple(p.shape) and v.dtype == p.numpy(force=True).dtype
    np.testing.assert_array_equal(v, p.numpy(force=True))


def test_other_tensors_are_not_kept():
    t = torch.zeros(3, 4)
    n = len(_ops._VIEWS)
    assert _ops.param_view(t) is not _ops.param_view(t)
    assert len(_ops._VIEWS) == n


def test_a_collected_parameter_is_forgotten():
    cell = ft.RNNCell(5, 6)
    cell(torch.randn(2, 5))
    keys = {id(p) for p in cell.parameters()}
    assert keys <= set(_ops._VIEWS)
    del cell
    gc.collect()
    assert not keys & set(_ops._VIEWS)


@pytest.mark.parametrize("kind", ["RNNCell", "GRUCell"])
def test_a_swapped_weight_is_used_by_the_next_step(kind):
    """p.data = ... between two steps: the second step computes with the new weights, as torch's does."""
    torch.manual_seed(0)
    tm = getattr(torch.nn, kind)(5, 6, dtype=torch.float64)
    fm = ft.convert(tm)
    x = torch.randn(3, 5, dtype=torch.float64)
    with torch.no_grad():
        fm(x)
        tm.weight_hh.data = torch.randn_like(tm.weight_hh)      # shared with fm: the same Parameter
        tm.bias_ih.data = torch.randn_like(tm.bias_ih)
        h = torch.randn(3, 6, dtype=torch.float64)
        torch.testing.assert_close(fm(x, h), tm(x, h), rtol=1e-12, atol=1e-12)
