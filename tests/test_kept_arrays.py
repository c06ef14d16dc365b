"""The "c" backend's large arrays live on blocks kept from call to call (fastrnn/_ckernels.pyx:
_kept_array): a fresh large allocation would cost a page fault for each of its pages on every call.
These tests hold the blocks to what a NumPy array promises (its own memory while any view of it
lives, writable, aligned, traced by tracemalloc as NumPy's) and the backend to reusing them."""
import gc
import os
import resource
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

import fastrnn
from conftest import backward_fn, forward_fn, make_problem, make_upstream

pytestmark = pytest.mark.skipif("c" not in fastrnn.backends(), reason="compiled backend not built")

MIB = 1 << 20
# the sanitizer job (.ci/run) preloads ASan, whose allocator and shadow memory take page faults of
# their own on every call
SANITIZED = "libasan" in os.environ.get("LD_PRELOAD", "")


@pytest.fixture
def ck():
    from fastrnn import _ckernels

    _ckernels.release_kept()
    yield _ckernels
    _ckernels.release_kept()


def test_a_large_array_is_an_ordinary_writable_aligned_array(ck):
    a = ck.empty_aligned((3, 500, 700), np.dtype(np.float32))
    assert a.shape == (3, 500, 700) and a.dtype == np.float32
    assert a.flags.c_contiguous and a.flags.writeable and a.ctypes.data % 4096 == 0
    a[...] = 2.5
    assert float(a.sum()) == 2.5 * a.size


def test_a_block_is_reused_only_when_no_view_of_its_array_lives(ck):
    dt = np.dtype(np.float64)
    a = ck.empty_aligned((2 * MIB // 8,), dt)
    addr = a.ctypes.data
    view = a[10:20]
    view[...] = 7.0
    del a
    gc.collect()
    b = ck.empty_aligned((2 * MIB // 8,), dt)     # the view keeps the first block: a new one
    assert b.ctypes.data != addr
    b_addr = b.ctypes.data
    b[...] = -1.0
    assert np.all(view == 7.0)
    del b, view
    gc.collect()
    assert ck.kept_bytes() == 2 * (2 * MIB)
    c = ck.empty_aligned((2 * MIB // 8,), dt)      # one of the two kept blocks
    assert c.ctypes.data in (addr, b_addr)
    assert ck.kept_bytes() == 2 * MIB


def test_kept_memory_is_bounded_and_released(ck):
    arrays = [ck.empty_aligned((MIB,), np.dtype(np.float32)) for _ in range(80)]     # 320 MiB in use
    del arrays
    gc.collect()
    assert 0 < ck.kept_bytes() <= ck.KEPT_MAX
    fastrnn.release_buffers()
    assert ck.kept_bytes() == 0


def test_tracemalloc_sees_a_large_array_as_numpy_memory(ck):
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        a = ck.empty_aligned((4 * MIB // 4,), np.dtype(np.float32))
        during = tracemalloc.get_traced_memory()[0]
        del a
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert during - before >= 4 * MIB
    assert after - before < MIB


@pytest.mark.skipif(SANITIZED, reason="under ASan, its allocator and shadow memory fault on every call")
@pytest.mark.parametrize("kind", ["gru", "rnn"])
@pytest.mark.parametrize("T,B", [(160, 32), (1, 1)], ids=["layer", "cell"])
def test_repeated_training_calls_take_no_page_faults(kind, T, B, ck):
    """Forward + backward at T x B x 256 x 256, its outputs and gradients dropped after each call
    (as a training loop does): the arrays (at 160 x 32, 11-12 MiB of outputs and gradients a call,
    more of cache; a cell's step, 1 x 1, has 256-768 KiB weight gradients) come back from the kept
    blocks, so after a warm-up call the process takes almost none of the page faults a fresh
    allocation would cost each call (with the blocks freed instead, _KEPT_MAX = 0 in _ckernels.pyx, the GRU's
    calls took about 9500 at 160 x 32; with only arrays of 1 MiB or more kept, the GRU cell's step
    took 176 a call, its two 768 KiB gradients mapped afresh by malloc every time)."""
    p = make_problem(kind, T, B, 256, 256, dtype=np.float32, seed=1)
    d_out, d_hn = make_upstream(T, B, 256, dtype=np.float32, seed=2)

    def call():
        out, h_n, cache = forward_fn(kind)(p["x"], p["h0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"],
                                           backend="c")
        grads = backward_fn(kind)(d_out, d_hn, cache)
        return out.nbytes + sum(g.nbytes for g in grads if isinstance(g, np.ndarray))

    nbytes = call()
    call()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        call()
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 3
    assert nbytes > (10 * MIB if T > 1 else MIB // 2)
    assert faults < nbytes / 4096 / 20, f"{faults:.0f} page faults a call"


def test_arrays_that_die_at_interpreter_exit_are_freed_quietly():
    """A large array still alive at exit after the extension's module globals were cleared (here a
    function kept by another module holds the script's globals to the very end): its block is freed
    without an exception (one was printed, 'Exception ignored in _Block.__dealloc__', while the bound
    on the kept bytes was a Python global)."""
    script = (
        "import json, numpy as np, fastrnn\n"
        "layer = fastrnn.GRU(64, 64)\n"
        "out, h = layer(np.ones((10, 64, 64), np.float32))\n"
        "dx, dh0 = layer.backward(np.ones_like(out))\n"
        "json._callback = lambda: (out, dx)\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd="/")
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""


def test_scratch_views_are_remembered_bounded_and_forgotten_when_the_buffer_grows():
    """_cbackend._scratch hands a repeated request the views it carved before; a larger request
    replaces the thread's buffer and forgets every view of the old one; at most _SCRATCH_MEMO
    requests are remembered; release_buffers forgets them all."""
    from fastrnn import _cbackend as cb

    dt = np.dtype(np.float32)
    cb.release_buffers()
    a = cb._scratch(dt, (2, 3), (5,))
    assert cb._scratch(dt, (2, 3), (5,)) is a
    assert [v.shape for v in a] == [(2, 3), (5,)]
    small = cb._scratch(dt, (4,))
    assert small[0].base is a[0].base                   # carved from the same buffer
    big = cb._scratch(dt, (1 << 16,))                   # larger than the buffer: a new one
    assert big[0].base is not a[0].base
    assert cb._scratch(dt, (2, 3), (5,)) is not a       # forgotten with the old buffer
    for n in range(2 * cb._SCRATCH_MEMO):
        cb._scratch(dt, (n + 1,))
    assert len(cb._scratch_by_thread.memo) <= cb._SCRATCH_MEMO
    cb.release_buffers()
    assert cb._scratch(dt, (4,)) is not small
