"""fastrnn.torch: fastrnn's kernels as a drop-in for torch.nn.GRU / torch.nn.RNN (CPU, float32/float64).

    import fastrnn.torch
    model = fastrnn.torch.convert(model)        # every torch.nn.GRU / RNN -> fastrnn's, same Parameters
    gru = fastrnn.torch.GRU(8, 32, num_layers=2, bidirectional=True, batch_first=True)

Importing this subpackage imports torch and registers the operators torch.ops.fastrnn.gru_forward,
gru_backward, rnn_forward and rnn_backward (`_ops`); `import fastrnn` alone never imports torch.
"""
from . import _ops
from .modules import GRU, RNN
from .convert import convert, to_torch

__all__ = ["GRU", "RNN", "convert", "to_torch"]
