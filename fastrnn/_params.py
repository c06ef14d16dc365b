"""The parameter container that layers, cells and blocks share: named parameter arrays with their
gradients, training mode, and state dicts in PyTorch's style.

    obj._add_param(name, values)     a parameter (cast to obj.dtype, C-contiguous) and its zero gradient
    obj.parameters()                 name -> the live arrays (an optimizer updates them in place)
    obj.grads                        name -> the accumulated gradients (backward adds into them)
    obj.zero_grad(), obj.state_dict(), obj.load_state_dict(sd, strict=True), obj.train(), obj.eval()
"""
from collections import OrderedDict, namedtuple

import numpy as np

from ._threads import PerThread
from ._validation import check, check_shape, real_array

__all__ = ["Parameters", "StateDictError", "IncompatibleKeys"]

# What load_state_dict(strict=False) returns, as torch.nn.Module.load_state_dict does.
IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class StateDictError(KeyError, ValueError):
    """Missing or unexpected keys in `load_state_dict`: both a KeyError and a ValueError."""

    def __str__(self):  # KeyError would show the message in quotes
        return str(self.args[0]) if self.args else ""


class Parameters(PerThread):
    """Named parameters and their gradients; a subclass calls `_init_params(dtype)` first."""

    _what = "module"            # how load_state_dict's shape errors name the owner ("for this layer")

    def _init_params(self, dtype):
        self.dtype = check("dtype", dtype)
        self._params = OrderedDict()
        self.grads = OrderedDict()
        self.training = True

    def _add_param(self, name, values):
        self._params[name] = np.ascontiguousarray(values, dtype=self.dtype)
        self.grads[name] = np.zeros_like(self._params[name])

    def _add_uniform(self, rng, bound, shapes):
        """Parameters drawn from U(-bound, bound), one (name, shape) after another, as torch initialises."""
        for name, shape in shapes:
            self._add_param(name, rng.uniform(-bound, bound, size=shape))

    def train(self, mode=True):
        """Training mode or, with mode=False, evaluation mode; returns self."""
        self.training = check("mode", mode)
        return self

    def eval(self):
        """Evaluation mode; returns self."""
        return self.train(False)

    def parameters(self):
        """Dict of names -> the live parameter arrays (update them in place to train)."""
        return OrderedDict(self._params)

    def named_parameters(self):
        """(name, array) pairs, as parameters().items()."""
        return list(self._params.items())

    def zero_grad(self):
        """Set every accumulated gradient to zero (in place: references to grads stay valid)."""
        for g in self.grads.values():
            g.fill(0)

    def state_dict(self):
        """Copies of the parameters, in their order (PyTorch's key order)."""
        return OrderedDict((k, v.copy()) for k, v in self._params.items())

    def load_state_dict(self, state_dict, strict=True):
        """Copy `state_dict` (NumPy arrays or torch tensors) into the parameters, cast to this dtype.
        strict=True: missing or unexpected keys raise StateDictError (a KeyError and a ValueError)
        naming them. A wrong shape raises ValueError. Nothing is changed on error. Returns
        (missing_keys, unexpected_keys) as torch does."""
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"state_dict: expected a mapping of names to arrays, got {type(state_dict).__name__}")
        keys = list(state_dict.keys())
        missing = [k for k in self._params if k not in state_dict]
        unexpected = [k for k in keys if k not in self._params]
        if strict and (missing or unexpected):
            parts = ([f"missing keys {missing}"] if missing else []) + \
                    ([f"unexpected keys {unexpected}"] if unexpected else [])
            raise StateDictError(f"load_state_dict for {type(self).__name__}: " + "; ".join(parts))
        new = {}
        for k in keys:
            if k in self._params:
                arr = real_array(k, state_dict[k], self.dtype)
                check_shape(k, arr, self._params[k].shape, f"for this {self._what}")
                new[k] = arr
        for k, arr in new.items():
            self._params[k][...] = arr
        return IncompatibleKeys(missing, unexpected)
