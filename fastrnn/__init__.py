"""fastrnn: recurrent neural networks (vanilla RNN, GRU) on the CPU, C/OpenMP kernels behind NumPy.

`fastrnn.reference` is the plain-NumPy specification; `fastrnn.functional` the kernels with a
`backend=` switch; `fastrnn.RNN` / `fastrnn.GRU` the PyTorch-compatible layers.
"""
__version__ = "0.1.0"

from . import _config

_config.on_import()     # the only import-time side effects, documented there

# noqa: E402 below: the imports come after on_import
from . import functional, reference  # noqa: E402
from ._backends import backends  # noqa: E402
from ._config import (get_num_threads, is_grad_enabled, max_threads, no_grad, release_buffers,  # noqa: E402
                      set_grad_enabled, set_num_threads, show_config)
from .layers import GRU, RNN  # noqa: E402
from .cells import GRUCell, RNNCell  # noqa: E402
from .blocks import Dense, Embedding  # noqa: E402
from . import losses, optim, models, datasets  # noqa: E402

__all__ = ["RNN", "GRU", "functional", "reference", "backends", "set_num_threads", "get_num_threads",
           "show_config", "__version__", "no_grad", "is_grad_enabled", "set_grad_enabled",
           "Dense", "Embedding", "losses", "optim", "models", "datasets"]
__all__ += ["RNNCell", "GRUCell", "max_threads", "release_buffers"]
