"""fastrnn.torch: fastrnn's kernels as a drop-in for torch.nn.GRU / RNN / GRUCell / RNNCell (CPU,
float32/float64).

    import fastrnn.torch
    model = fastrnn.torch.convert(model)   # every torch.nn.GRU / RNN / GRUCell / RNNCell -> fastrnn's,
                                           # sharing the same Parameters
    gru = fastrnn.torch.GRU(8, 32, num_layers=2, bidirectional=True, batch_first=True)

Importing this subpackage imports torch and registers the operators torch.ops.fastrnn.gru_forward,
gru_backward, rnn_forward and rnn_backward (`_ops`); `import fastrnn` alone never imports torch.
"""
from . import _ops
from .modules import GRU, RNN, ArgumentError, DtypeError
from .cells import GRUCell, RNNCell
from .convert import convert, to_torch

__all__ = ["GRU", "RNN", "GRUCell", "RNNCell", "convert", "to_torch", "ArgumentError", "DtypeError"]
