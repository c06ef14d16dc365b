"""The "gemm" contender: the GEMM-bound time of SPEC §4 (a time bound, not a library)."""
import numpy as np

from ..workloads import GATES

__all__ = ["Gemm"]


def _limit_blas_threads(threads):
    """Cap NumPy's BLAS pool (the environment variables already do; this also covers a BLAS that has
    been loaded before they were read). Returns a description of the BLAS, or None."""
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        return None
    threadpool_limits(limits=threads, user_api="blas")
    blas = [f"{d['internal_api']} {d['version']}" for d in threadpool_info() if d["user_api"] == "blas"]
    return ", ".join(blas) or None


class Gemm:
    """The GEMM-bound time of SPEC §4: NumPy's BLAS doing the GEMMs of the workload and nothing else.

    forward:   one (T*B, I) @ (I, G*H) for the input projection, T x (B, H) @ (H, G*H) for the steps;
    training adds T x (B, G*H) @ (G*H, H) (dh), (T*B, G*H) @ (G*H, I) (dx),
               (G*H, T*B) @ (T*B, I) (dW_ih) and (G*H, T*B) @ (T*B, H) (dW_hh).
    Each product is one np.matmul into a preallocated output, so at B = 1 (T small products) the
    ~1 µs of a NumPy call is counted too: a slightly generous bound there."""

    slow = False
    memory = False  # a time bound, not a library

    def setup(self, threads):
        blas = _limit_blas_threads(threads)
        if blas is None:
            try:
                cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
                blas = f"{cfg['name']} {cfg['version']}"
            except Exception:
                blas = "unknown"
        return {"numpy": np.__version__, "blas": blas, "threads": threads}

    def build(self, w, inputs):
        T, B, I, H = w.dims
        if w.is_step:    # one step: the products of a sequence of one
            T = 1
        GH = GATES[w.cell] * H
        rng = np.random.default_rng(1)

        def operand(*shape):  # random, not zeros: the same values a kernel would see, no denormals
            return rng.uniform(-1, 1, shape).astype(w.dtype)

        x = inputs.x[:T].reshape(T * B, I)
        h = operand(B, H)
        products = [(x, inputs.w_ih.T, np.empty((T * B, GH), w.dtype))]
        products += [(h, inputs.w_hh.T, np.empty((B, GH), w.dtype))] * T
        if w.is_training:
            d_gates = operand(T * B, GH)  # the gate gradients of all steps
            hs = operand(T * B, H)  # the states of all steps
            products += [(d_gates[:B], inputs.w_hh, np.empty((B, H), w.dtype))] * T
            products += [
                (d_gates, inputs.w_ih, np.empty((T * B, I), w.dtype)),
                (d_gates.T, x, np.empty((GH, I), w.dtype)),
                (d_gates.T, hs, np.empty((GH, H), w.dtype)),
            ]

        def gemms():
            for a, b, c in products:
                np.matmul(a, b, out=c)

        return gemms
