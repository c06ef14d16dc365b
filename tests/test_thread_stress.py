"""Several Python threads at once (SPEC §3): the kernels release the GIL, so concurrent calls must give
what the same calls give one at a time; a layer shared by threads keeps each thread's forward for
that thread's backward and adds every thread's gradients into `grads`; short-lived threads do not
leave their per-thread work buffers behind."""
import threading

import numpy as np
import pytest

import fastrnn
from fastrnn import functional as F
from conftest import COMPILED, RESULT_NAMES, assert_close, make_problem, make_upstream

pytestmark = pytest.mark.skipif(not COMPILED, reason="no compiled backend built")

N_THREADS = 8
TIMEOUT = 60.0       # seconds; a hang is a failure, not a stuck test run


def run_threads(target, n):
    """Run target(i, barrier) in n threads started together; `barrier` (of the n threads) is there for
    the target's own lockstep and is broken by any thread's error, so no thread is left waiting.
    Re-raises the first thread's error."""
    barrier = threading.Barrier(n)
    errors = [None] * n

    def body(i):
        try:
            barrier.wait(timeout=TIMEOUT)
            target(i, barrier)
        except BaseException as exc:  # noqa: BLE001 - reported below, in the main thread
            errors[i] = exc
            barrier.abort()

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(2 * TIMEOUT)
    assert not any(t.is_alive() for t in threads), "a thread did not finish (hang)"
    real = [(i, e) for i, e in enumerate(errors) if e is not None and not isinstance(e, threading.BrokenBarrierError)]
    if real:
        i, exc = real[0]
        raise AssertionError(f"thread {i} failed: {exc!r}") from exc
    assert not any(errors), f"thread errors: {errors}"


# ---- the functional API --------------------------------------------------------------------------

# One problem per thread: kinds, options, dtypes and shapes all different (work buffers of different
# sizes in use at once), two of them large enough to split over the OpenMP threads.
JOBS = [
    ("gru", {"reset_after": True}, np.float32, (12, 16, 40, 96), dict(reverse=False, lengths=None)),
    ("gru", {"reset_after": False}, np.float64, (7, 5, 33, 29), dict(reverse=True, lengths="random")),
    ("rnn", {"nonlinearity": "tanh"}, np.float32, (20, 3, 17, 64), dict(reverse=True, lengths=None)),
    ("rnn", {"nonlinearity": "relu"}, np.float64, (9, 8, 12, 40), dict(reverse=False, lengths="random")),
    ("gru", {"reset_after": True}, np.float64, (1, 4, 70, 130), dict(reverse=False, lengths=None)),
    ("rnn", {"nonlinearity": "tanh"}, np.float64, (30, 32, 24, 160), dict(reverse=False, lengths="random")),
    ("gru", {"reset_after": False}, np.float32, (5, 1, 9, 11), dict(reverse=True, lengths=None)),
    ("gru", {"reset_after": True}, np.float32, (16, 24, 64, 200), dict(reverse=True, lengths="random")),
]
ITERATIONS = 4


def _job(i):
    kind, opts, dtype, (T, B, I, H), o = JOBS[i % len(JOBS)]
    p = make_problem(kind, T, B, I, H, dtype, seed=100 + i)
    rng = np.random.default_rng(200 + i)
    lengths = rng.integers(0, T + 1, B) if o["lengths"] == "random" else None
    d_out, d_hn = make_upstream(T, B, H, dtype, seed=300 + i)
    return kind, opts, dtype, p, dict(reverse=o["reverse"], lengths=lengths), d_out, d_hn


def _call(kind, opts, p, backend, call_opts, d_out, d_hn):
    fwd, bwd = (F.rnn_forward, F.rnn_backward) if kind == "rnn" else (F.gru_forward, F.gru_backward)
    out, h_n, cache = fwd(p["x"], p["h0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], backend=backend,
                          **call_opts, **opts)
    return dict(zip(RESULT_NAMES, (out, h_n) + tuple(bwd(d_out, d_hn, cache))))


def _same(got, want, backend, dtype, where):
    for name in RESULT_NAMES:
        if backend == "c":        # the "c" kernels are bitwise reproducible (README: Determinism)
            assert np.array_equal(got[name], want[name]), f"{where}: {name} differs from the call made alone"
        else:                     # OpenBLAS may round differently from call to call
            assert_close(got[name], want[name], dtype, f"{where}: {name}")


@pytest.mark.parametrize("backend", COMPILED)
def test_functional_calls_from_many_threads(backend):
    jobs = [_job(i) for i in range(N_THREADS)]
    alone = [_call(kind, opts, p, backend, o, d_out, d_hn) for kind, opts, _, p, o, d_out, d_hn in jobs]
    got = [[None] * ITERATIONS for _ in range(N_THREADS)]

    def work(i, barrier):
        kind, opts, _, p, o, d_out, d_hn = jobs[i]
        for it in range(ITERATIONS):
            got[i][it] = _call(kind, opts, p, backend, o, d_out, d_hn)

    run_threads(work, N_THREADS)
    for i in range(N_THREADS):
        for it in range(ITERATIONS):
            _same(got[i][it], alone[i], backend, jobs[i][2], f"thread {i} ({jobs[i][0]} {jobs[i][1]}) call {it}")


# ---- one layer shared by several threads ----------------------------------------------------------

def _layer_inputs(i, T, B, I, H, L, D, dtype):
    rng = np.random.default_rng(1000 + i)
    T_i, B_i = T + i % 3, B + i          # each thread its own sizes: a foreign cache cannot fit
    return (rng.standard_normal((T_i, B_i, I)).astype(dtype), rng.standard_normal((L * D, B_i, H)).astype(dtype),
            rng.standard_normal((T_i, B_i, D * H)).astype(dtype), rng.standard_normal((L * D, B_i, H)).astype(dtype))


@pytest.mark.parametrize("lockstep", [True, False], ids=["lockstep", "free-running"])
def test_shared_layer_forward_backward_from_many_threads(lockstep):
    """Every thread's dx / dh0 are those of its own forward, and `grads` ends up the sum of every
    thread's gradients. lockstep: all forwards, then (a barrier) all backwards, so that a backward
    that found another thread's forward cannot go unnoticed; free-running: many more calls, the
    backwards' additions into `grads` overlapping at random."""
    T, B, I, H, L, D, dtype = 6, 3, 20, 48, 2, 2, np.float64
    iterations = 4 if lockstep else 25
    gru = fastrnn.GRU(I, H, num_layers=L, bidirectional=True, dtype=dtype, seed=5)
    inputs = [_layer_inputs(i, T, B, I, H, L, D, dtype) for i in range(N_THREADS)]

    # each thread's work, alone, on a fresh copy of the layer
    alone, expected = [], {k: np.zeros_like(v) for k, v in gru.grads.items()}
    for x, h0, d_out, d_hn in inputs:
        ref = fastrnn.GRU(I, H, num_layers=L, bidirectional=True, dtype=dtype, seed=5)
        out, h_n = ref(x, h0)
        dx, dh0 = ref.backward(d_out, d_hn)
        alone.append((out, h_n, dx, dh0))
        for k, g in ref.grads.items():
            expected[k] += iterations * g

    got = [[None] * iterations for _ in range(N_THREADS)]

    def work(i, barrier):
        x, h0, d_out, d_hn = inputs[i]
        for it in range(iterations):
            out, h_n = gru(x, h0)
            if lockstep:
                barrier.wait(timeout=TIMEOUT)
            dx, dh0 = gru.backward(d_out, d_hn)
            if lockstep:
                barrier.wait(timeout=TIMEOUT)
            got[i][it] = (out, h_n, dx, dh0)

    run_threads(work, N_THREADS)
    for i in range(N_THREADS):
        for it in range(iterations):
            for name, g, a in zip(("out", "h_n", "dx", "dh0"), got[i][it], alone[i]):
                assert np.array_equal(g, a), f"thread {i} call {it}: {name} differs from the thread's work alone"
    for k in expected:
        assert_close(gru.grads[k], expected[k], dtype, f"grads[{k!r}] (sum over the threads)")


# ---- per-thread buffers of short-lived threads ----------------------------------------------------

def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


_PAGE = 4096
try:
    import os as _os
    _PAGE = _os.sysconf("SC_PAGE_SIZE")
except (ValueError, OSError, AttributeError):
    pass


def _under_asan():
    try:
        with open("/proc/self/maps") as f:
            return "libasan" in f.read()
    except OSError:
        return False


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/statm"), reason="needs /proc/self/statm")
@pytest.mark.parametrize("how", ["functional", "shared-layer"])
def test_short_lived_threads_do_not_grow_memory(how):
    """300 threads, each one GRU forward then exit: the kernels' per-thread buffers (packed w_hh and
    the projections, about 1 MB per call here) and a shared layer's per-thread state go with them."""
    if _under_asan():
        pytest.skip("RSS is meaningless under ASan (freed memory is held in its quarantine)")
    T, B, I, H = 8, 16, 64, 256
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    gru = fastrnn.GRU(I, H, seed=0)
    w_ih, w_hh, b_ih, b_hh = (gru.parameters()[k] for k in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"))
    failures = []

    def one():
        try:
            if how == "functional":
                F.gru_forward(x, None, w_ih, w_hh, b_ih, b_hh)
            else:
                gru(x)              # keeps this thread's forward state for a backward that never comes
        except BaseException as exc:  # noqa: BLE001
            failures.append(exc)

    def wave(n):
        for _ in range(n):
            t = threading.Thread(target=one)
            t.start()
            t.join(TIMEOUT)
            assert not t.is_alive(), "a thread did not finish (hang)"

    wave(40)                        # warm-up: allocator arenas, thread stacks, OpenMP pools
    before = _rss_bytes()
    wave(300)
    grown = _rss_bytes() - before
    assert not failures, failures[:3]
    assert grown <= 50 * 2**20, f"RSS grew by {grown / 2**20:.1f} MiB over 300 short-lived threads"
