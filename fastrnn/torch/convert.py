"""convert(model) / to_torch(model): swap torch.nn.GRU / RNN / GRUCell / RNNCell for fastrnn.torch's
twins and back.

The twin SHARES the original's Parameter objects (not copies): an optimizer made before the
conversion keeps updating the parameters the new model uses, and state_dict keys are unchanged.
Hooks registered on the replaced module itself are not carried over.
"""
import copy
import warnings

import torch
from torch import nn

from .cells import GRUCell, RNNCell
from .modules import GRU, RNN

__all__ = ["convert", "to_torch"]

_UNCONVERTIBLE = (nn.LSTM, nn.LSTMCell)
# torch class -> fastrnn.torch class, and the constructor arguments both take
_TWINS = {nn.GRU: GRU, nn.RNN: RNN, nn.GRUCell: GRUCell, nn.RNNCell: RNNCell}
_LAYER_ARGS = ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout", "bidirectional")
_CELL_ARGS = ("input_size", "hidden_size", "bias")


def _config(m):
    args = _LAYER_ARGS if isinstance(m, (nn.RNNBase, GRU, RNN)) else _CELL_ARGS
    config = {k: getattr(m, k) for k in args}
    if isinstance(m, (nn.RNN, nn.RNNCell, RNN, RNNCell)):
        config["nonlinearity"] = m.nonlinearity
    return config


def _share(dst, src):
    """dst takes src's Parameter objects (same names and order) and training mode; returns dst."""
    names = [n for n, _ in src.named_parameters(recurse=False)]
    assert names == [n for n, _ in dst.named_parameters(recurse=False)], (names, list(dst._parameters))
    for n in names:
        dst._parameters[n] = src._parameters[n]
    dst.train(src.training)
    return dst


def _why_not_fastrnn(m):
    if type(m) not in _TWINS:
        torch_class = next(c for c in type(m).__mro__ if c in _TWINS)
        return f"{type(m).__name__} (a subclass of torch.nn.{torch_class.__name__}: its forward may differ)"
    w = m.weight_ih_l0 if isinstance(m, nn.RNNBase) else m.weight_ih
    if w.device.type != "cpu" or w.dtype not in (torch.float32, torch.float64):
        return f"{type(m).__name__} on {w.device} with dtype {w.dtype} (fastrnn covers CPU float32/float64)"
    if getattr(m, "proj_size", 0):
        return f"{type(m).__name__} with proj_size={m.proj_size}"
    return None


def _quiet(make):
    """make() without the 'dropout with num_layers=1' warning: the original module gave it already."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="dropout option adds dropout", category=UserWarning)
        return make()


def _to_fastrnn(m):
    twin_class = _TWINS[type(m)]
    return _share(_quiet(lambda: twin_class(**_config(m), device="meta", dtype=_dtype(m))), m)


def _dtype(m):
    return next(m.parameters()).dtype


def to_torch_module(m):
    """The torch.nn twin of one fastrnn.torch module, sharing its parameters (the layers' fallback)."""
    torch_class = next(k for k, v in _TWINS.items() if isinstance(m, v))
    twin = _share(_quiet(lambda: torch_class(**_config(m), device="meta", dtype=_dtype(m))), m)
    if isinstance(twin, nn.RNNBase):
        twin._init_flat_weights()   # torch.nn.RNNBase keeps a list of its parameters: point it at them
    return twin


def _walk(model, inplace, replace, what):
    """A tree in which `replace(m)` -> (twin or None, reason or None) is applied to every module.
    With inplace=False the containers on the way are shallow copies (the original tree is untouched;
    every Parameter, buffer and unchanged module is shared)."""
    memo, skipped = {}, []

    def visit(m):
        if id(m) in memo:
            return memo[id(m)]
        twin, reason = replace(m)
        if reason is not None:
            skipped.append(reason)
        if twin is None:
            new_children = {k: (visit(c) if c is not None else None) for k, c in m._modules.items()}
            if all(new_children[k] is c for k, c in m._modules.items()):
                twin = m
            elif inplace:
                m._modules.update(new_children)
                twin = m
            else:
                twin = copy.copy(m)
                twin._modules = dict(new_children)
        memo[id(m)] = twin
        return twin

    out = visit(model)
    if skipped:
        warnings.warn(f"fastrnn.torch.{what}: left unconverted: " + "; ".join(sorted(set(skipped))),
                      UserWarning, stacklevel=3)
    return out


def convert(model, inplace=False):
    """`model` with every torch.nn.GRU / torch.nn.RNN (the root included) replaced by
    fastrnn.torch.GRU / RNN sharing its parameters. What cannot be converted (LSTM, the cells,
    subclasses, CUDA or half-precision modules) stays and is named in one UserWarning.
    inplace=True changes `model`'s children in place (a root GRU/RNN is still returned as a new module:
    use the return value)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")

    def replace(m):
        if isinstance(m, tuple(_TWINS)):
            reason = _why_not_fastrnn(m)
            return (None, reason) if reason else (_to_fastrnn(m), None)
        if isinstance(m, _UNCONVERTIBLE):
            return None, f"{type(m).__name__} (not implemented yet)"
        return None, None
    return _walk(model, inplace, replace, "convert")


def to_torch(model, inplace=False):
    """The inverse of `convert`: fastrnn.torch.GRU / RNN back to torch.nn.GRU / RNN sharing the same
    parameters (a GRU with reset_after=False has no torch twin: it stays, named in a warning)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")

    def replace(m):
        if isinstance(m, tuple(_TWINS.values())):
            if isinstance(m, (GRU, GRUCell)) and not m.reset_after:
                return None, f"fastrnn.torch.{type(m).__name__} with reset_after=False (torch has no such GRU)"
            return to_torch_module(m), None
        return None, None
    return _walk(model, inplace, replace, "to_torch")
