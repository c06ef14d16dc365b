"""The "fastrnn.torch" contender of benches.harness: fastrnn.torch's modules, timed as the torch one is.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benches.run --shapes medium,gnmt \
        --contenders fastrnn,fastrnn.torch,torch --passes fwd,train
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benches.run --shapes 1x1x256x256,1x8x256x256 \
        --passes step,step-train --contenders fastrnn,fastrnn.torch,torch --threads 1

    "fwd", "train"        fastrnn.torch.GRU / RNN (one layer, (T, B, I) input) with the weights of
                          harness.make_inputs, set up as harness.Torch sets up torch.nn.GRU / RNN:
                          "fwd" one call under torch.no_grad(); "train" zero_grad, then the call and
                          out.backward(d_out), with x and h0 requiring gradients.
    "step", "step-train"  fastrnn.torch.GRUCell / RNNCell (torch.nn.GRUCell / RNNCell's signature) on
                          the shape's first step, the same way; Unsupported (a gap in the table) while
                          fastrnn.torch has no such attribute.

In benches.run's table the column "fastrnn.torch/fastrnn" is then the module's time over the NumPy
layer's on the same C kernels (above 1: the torch module is slower): what autograd, the operators
and the tensor <-> ndarray views cost per call. That is why the backward is seeded with d_out itself,
as fastrnn's backward(d_out, ...) is, and not as harness.Torch does it, (out * d_out).sum().backward()
(the same gradients, plus a product and a sum over T·B·H values and their backward: measured here
2-11% of an RNN / GRU training call at medium and gnmt). TorchModules(..., like_torch=True) seeds it
torch's way, for a like-for-like torch/fastrnn.torch (not a column: the table compares every peer
with fastrnn; divide the two ms columns). The whole-model comparison is benches/torch_train.py.

The contender is registered in harness.CONTENDERS as TorchModules(Unsupported): the harness hands
over its own Unsupported class, because a worker runs as `python -m benches.harness` (the module
`__main__`, whose Unsupported is not the one an `import benches.harness` here would define).
"""

__all__ = ["TorchModules"]

_PARAMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


class TorchModules:
    """fastrnn.torch.GRU / RNN (and GRUCell / RNNCell where they exist) with the harness's weights."""

    slow = False
    memory = True

    def __init__(self, unsupported=NotImplementedError, like_torch=False):
        self.unsupported = unsupported      # harness.Unsupported: raised for what fastrnn.torch lacks
        self.like_torch = like_torch        # True: (out * d_out).sum().backward(), as harness.Torch

    def setup(self, threads):
        import torch

        import fastrnn
        import fastrnn.torch as ft

        torch.set_num_threads(threads)
        torch.set_flush_denormal(True)
        fastrnn.set_num_threads(threads)
        return {"fastrnn": fastrnn.__version__, "torch": torch.__version__,
                "cells": hasattr(ft, "GRUCell") and hasattr(ft, "RNNCell"),
                "threads": f"{torch.get_num_threads()} (torch), {fastrnn.get_num_threads()} (fastrnn)"}

    def model(self, w):
        """The module for workload `w` and the names of its weight_ih, weight_hh, bias_ih, bias_hh."""
        import torch

        import fastrnn.torch as ft

        T, B, I, H = w.dims
        dtype = getattr(torch, w.dtype)
        if w.is_step:
            name = {"rnn": "RNNCell", "gru": "GRUCell"}[w.cell]
            cls = getattr(ft, name, None)
            if cls is None:
                raise self.unsupported(f"fastrnn.torch has no {name} (yet)")
            return cls(I, H, dtype=dtype), _PARAMS
        cls = {"rnn": ft.RNN, "gru": ft.GRU}[w.cell]
        return cls(I, H, dtype=dtype), tuple(p + "_l0" for p in _PARAMS)

    def build(self, w, inputs):
        import torch

        model, names = self.model(w)
        with torch.no_grad():
            for name, value in zip(names, inputs[2:6]):
                getattr(model, name).copy_(torch.from_numpy(value))
        if w.is_step:
            x, h0, d_out = (torch.from_numpy(a) for a in (inputs.x[0], inputs.h0, inputs.d_out[0]))
            run = lambda: model(x, h0)
        else:
            x, h0, d_out = (torch.from_numpy(inputs.x), torch.from_numpy(inputs.h0)[None],
                            torch.from_numpy(inputs.d_out))
            run = lambda: model(x, h0)[0]
        if not w.is_training:
            def forward():
                with torch.no_grad():
                    return run()

            return forward

        x.requires_grad_(True)
        h0.requires_grad_(True)

        def train():
            model.zero_grad(set_to_none=True)
            x.grad = h0.grad = None
            if self.like_torch:
                (run() * d_out).sum().backward()
            else:
                run().backward(d_out)

        train.tensors = (model, x, h0)     # for the smoke test: the gradients after a call
        return train
