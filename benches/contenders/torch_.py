"""The "torch" contender of benches.contenders: torch.nn.RNN / GRU (and RNNCell / GRUCell for the step
passes) on the CPU, loaded with benches.workloads.make_inputs' weights.

    "fwd", "step"          one call under torch.no_grad()
    "train", "step-train"  zero_grad, the call, and a backward seeded with d_out, x and h0 requiring
                           gradients (fastrnn returns dx and dh0): (out * d_out).sum().backward(), or
                           out.backward(d_out) where `seed_with_sum` is False

`model(w)` is the one thing a subclass changes (benches/contenders/torch_modules.py: fastrnn.torch's
modules, timed the same way).
"""

__all__ = ["Torch"]

_PARAMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


class Torch:
    """torch.nn.RNN / torch.nn.GRU (CPU), loaded with the same weights."""

    slow = False
    memory = True
    seed_with_sum = True

    def setup(self, threads):
        import torch

        torch.set_num_threads(threads)
        torch.set_flush_denormal(True)
        return {"torch": torch.__version__, "threads": torch.get_num_threads()}

    def model(self, w):
        """The module for workload `w` (a cell for the step passes, else one layer)."""
        import torch

        T, B, I, H = w.dims
        kinds = {"rnn": torch.nn.RNNCell, "gru": torch.nn.GRUCell} if w.is_step else \
            {"rnn": torch.nn.RNN, "gru": torch.nn.GRU}
        return kinds[w.cell](I, H, dtype=getattr(torch, w.dtype))

    def build(self, w, inputs):
        import torch

        model = self.model(w)
        if w.is_step:  # a cell on the first step
            names = _PARAMS
            x, h0, d_out = (torch.from_numpy(a) for a in (inputs.x[0], inputs.h0, inputs.d_out[0]))
            run = lambda: model(x, h0)
        else:
            names = tuple(p + "_l0" for p in _PARAMS)
            x, h0, d_out = torch.from_numpy(inputs.x), torch.from_numpy(inputs.h0)[None], torch.from_numpy(inputs.d_out)
            run = lambda: model(x, h0)[0]
        with torch.no_grad():
            for name, value in zip(names, inputs[2:6]):
                getattr(model, name).copy_(torch.from_numpy(value))
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
            if self.seed_with_sum:
                (run() * d_out).sum().backward()
            else:
                run().backward(d_out)

        train.tensors = (model, x, h0)     # for benches/test_torch_bench.py: the gradients after a call
        return train
