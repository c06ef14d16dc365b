"""The "fastrnn" and "reference" contenders: fastrnn.functional (whole sequences) and fastrnn.RNNCell /
GRUCell (the step passes) with one backend: None, the fastest one built, or "numpy", the NumPy
reference. `cache_bytes` is what benches.run --memory reports as fastrnn's cache.
"""
import numpy as np

from ..memory import cache_nbytes

__all__ = ["FastRNN"]


class FastRNN:
    """fastrnn.functional with one backend (None: the fastest one built)."""

    memory = True

    def __init__(self, backend=None, slow=False):
        self.backend, self.slow = backend, slow

    def setup(self, threads):
        import fastrnn

        available = fastrnn.backends()
        if self.backend is not None and self.backend not in available:
            raise ImportError(f"fastrnn backend {self.backend!r} not built (have {available})")
        fastrnn.set_num_threads(threads)
        info = {"fastrnn": fastrnn.__version__, "backend": self.backend or available[0],
                "threads": fastrnn.get_num_threads()}
        if "c" in available:
            from fastrnn import _ckernels

            info["simd"] = _ckernels.simd_levels()[0]
        return info

    def build(self, w, inputs):
        import fastrnn
        from fastrnn import functional as F

        if w.is_step:
            return self.build_step(w, inputs)
        forward, backward = {"rnn": (F.rnn_forward, F.rnn_backward),
                             "gru": (F.gru_forward, F.gru_backward)}[w.cell]
        args = inputs[:6]
        if w.phase == "fwd":
            def infer():
                with fastrnn.no_grad():
                    forward(*args, backend=self.backend)

            return infer

        def train():
            _, _, cache = forward(*args, backend=self.backend)
            backward(inputs.d_out, None, cache)

        return train

    def build_step(self, w, inputs):
        import fastrnn

        cls = {"rnn": fastrnn.RNNCell, "gru": fastrnn.GRUCell}[w.cell]
        T, B, I, H = w.dims
        cell = cls(I, H, dtype=np.dtype(w.dtype), backend=self.backend)
        cell.load_state_dict(dict(zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), inputs[2:6])))
        x, h, d = inputs.x[0], inputs.h0, inputs.d_out[0]
        if not w.is_training:
            def step():
                with fastrnn.no_grad():
                    cell(x, h)

            return step

        def step_train():
            cell(x, h)
            cell.backward(d)

        return step_train

    def cache_bytes(self, w, inputs):
        """Bytes the forward's cache keeps for the backward, beyond the caller's own arrays."""
        from fastrnn import functional as F

        forward = {"rnn": F.rnn_forward, "gru": F.gru_forward}[w.cell]
        _, _, cache = forward(*inputs[:6], backend=self.backend)
        return cache_nbytes(cache.data, inputs)
