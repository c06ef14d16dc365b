"""fastrnn: recurrent neural networks (vanilla RNN, GRU) on the CPU, C/OpenMP kernels behind NumPy.

`fastrnn.reference` is the plain-NumPy specification; `fastrnn.functional` the kernels with a
`backend=` switch; `fastrnn.RNN` / `fastrnn.GRU` the PyTorch-compatible layers.
"""
__version__ = "0.1.0"

from . import functional, reference
from ._backends import backends
from ._config import (get_num_threads, is_grad_enabled, max_threads, no_grad, release_buffers, set_grad_enabled,
                      set_num_threads, show_config)
from . import _backends
from .layers import GRU, RNN
from .cells import GRUCell, RNNCell
from .blocks import Dense, Embedding
from . import losses, optim, models, datasets

__all__ = ["RNN", "GRU", "functional", "reference", "backends", "set_num_threads", "get_num_threads",
           "show_config", "__version__", "no_grad", "is_grad_enabled", "set_grad_enabled",
           "Dense", "Embedding", "losses", "optim", "models", "datasets"]
__all__ += ["RNNCell", "GRUCell", "max_threads", "release_buffers"]

_backends.check_simd_request()
