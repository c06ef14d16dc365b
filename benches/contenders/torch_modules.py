"""The "fastrnn.torch" contender of benches.contenders: fastrnn.torch's modules, timed as the torch one is.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benches.run --shapes medium,gnmt \
        --contenders fastrnn,fastrnn.torch,torch --passes fwd,train
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benches.run --shapes 1x1x256x256,1x8x256x256 \
        --passes step,step-train --contenders fastrnn,fastrnn.torch,torch --threads 1

    "fwd", "train"        fastrnn.torch.GRU / RNN (one layer, (T, B, I) input) with the weights of
                          workloads.make_inputs, set up as Torch (benches/contenders/torch_.py) sets up
                          torch.nn.GRU / RNN:
                          "fwd" one call under torch.no_grad(); "train" zero_grad, then the call and
                          out.backward(d_out), with x and h0 requiring gradients.
    "step", "step-train"  fastrnn.torch.GRUCell / RNNCell (torch.nn.GRUCell / RNNCell's signature) on
                          the shape's first step, the same way.

In benches.run's table the column "fastrnn.torch/fastrnn" is then the module's time over the NumPy
layer's on the same C kernels (above 1: the torch module is slower): what autograd, the operators
and the tensor <-> ndarray views cost per call. That is why the backward is seeded with d_out itself,
as fastrnn's backward(d_out, ...) is, and not as Torch does it, (out * d_out).sum().backward()
(the same gradients, plus a product and a sum over T·B·H values and their backward: measured here
2-11% of an RNN / GRU training call at medium and gnmt). TorchModules(like_torch=True) seeds it
torch's way, for a like-for-like torch/fastrnn.torch (not a column: the table compares every peer
with fastrnn; divide the two ms columns). The whole-model comparison is benches/torch_train.py.
"""
from .torch_ import Torch

__all__ = ["TorchModules"]


class TorchModules(Torch):
    """fastrnn.torch.GRU / RNN / GRUCell / RNNCell with make_inputs' weights, built as Torch builds
    torch.nn's; the backward seeded with out.backward(d_out) unless like_torch."""

    def __init__(self, like_torch=False):
        self.seed_with_sum = like_torch     # True: (out * d_out).sum().backward(), as Torch

    def setup(self, threads):
        import torch

        import fastrnn

        info = super().setup(threads)
        fastrnn.set_num_threads(threads)
        return {"fastrnn": fastrnn.__version__, "torch": info["torch"],
                "threads": f"{torch.get_num_threads()} (torch), {fastrnn.get_num_threads()} (fastrnn)"}

    def model(self, w):
        import torch

        import fastrnn.torch as ft

        T, B, I, H = w.dims
        kinds = {"rnn": ft.RNNCell, "gru": ft.GRUCell} if w.is_step else {"rnn": ft.RNN, "gru": ft.GRU}
        return kinds[w.cell](I, H, dtype=getattr(torch, w.dtype))
