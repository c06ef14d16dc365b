"""Every compiled backend against the NumPy reference (SPEC §5): forward out, h_n and all six
gradients, for every kernel, option and dtype; thread-count independence; thread safety (SPEC §3).

Without a compiled backend these tests skip, except `test_c_backend_is_built`, which fails: CI must
build the extension."""
import concurrent.futures

import numpy as np
import pytest

import fastrnn
from conftest import (COMPILED, KERNEL_IDS, KERNELS, RESULT_NAMES, assert_close, make_problem,
                      relu_margin, run)

DTYPES = [np.float64, np.float32]

# name -> (T, B, I, H, options); options: reverse, lengths (a list), h0 (bool), bias (bool),
# layout ("fortran": Fortran-ordered / strided copies of every input).
CASES = {
    "one": (1, 1, 1, 1, {}),
    "one-rev": (1, 1, 1, 1, {"reverse": True}),
    "odd": (7, 5, 3, 13, {}),
    "odd-rev": (7, 5, 3, 13, {"reverse": True}),
    "H37": (5, 3, 4, 37, {}),
    "H37-rev-lengths": (5, 3, 4, 37, {"reverse": True, "lengths": [5, 0, 2]}),
    "medium": (20, 16, 24, 40, {}),
    "medium-rev-lengths": (20, 16, 24, 40, {"reverse": True,
                                            "lengths": [7, 20, 0, 13, 1, 20, 19, 3,
                                                        0, 11, 20, 5, 16, 2, 9, 18]}),
    "lengths": (7, 5, 3, 13, {"lengths": [3, 7, 0, 5, 1]}),
    "lengths-rev": (7, 5, 3, 13, {"lengths": [3, 7, 0, 5, 1], "reverse": True}),
    "lengths-all-0": (4, 3, 3, 5, {"lengths": [0, 0, 0]}),
    "h0-none": (6, 4, 5, 9, {"h0": False}),
    "no-bias": (6, 4, 5, 9, {"bias": False}),
    "no-bias-h0-none-rev": (6, 4, 5, 9, {"bias": False, "h0": False, "reverse": True}),
    "fortran": (6, 4, 5, 9, {"layout": "fortran", "lengths": [6, 2, 0, 4]}),
    # a single step (as a cell's): the weights are read in place, by vector dot products (with tails)
    "step": (1, 3, 70, 37, {}),
    "step-B1": (1, 1, 64, 45, {"reverse": True}),
    "step-B1-wide": (1, 1, 40, 300, {}),           # eight vectors of columns at a time (inplace.c: row_block)
    "step-tiles": (1, 30, 70, 37, {}),             # dots' tiles of rows and outputs, and their remainders
    "step-tiles-lengths-rev": (1, 30, 33, 37, {"lengths": [b % 2 for b in range(30)], "reverse": True}),
    # a single step of a batch past FR_DIRECT_BATCH: packed weights, the projection step by step
    "step-batch": (1, 33, 300, 21, {}),
    # ... with rows of I + H >= 16 B terms: the forward reads in place, the backward packs (direct_step)
    "step-batch-wide": (1, 40, 400, 260, {}),
    # B < 32: the forward projects its input by blocks of steps (B = 4: 8 steps, the last block of 700
    # shorter), into each thread's own buffer (loop.h: step_projection)
    "long": (700, 4, 3, 9, {}),
    "long-rev": (700, 4, 3, 9, {"reverse": True}),
    "long-lengths": (700, 4, 3, 9, {"lengths": [700, 513, 0, 300]}),
    # B = 1: blocks of 32 steps, the last of 70 six, in either direction
    "stream-blocks": (70, 1, 5, 9, {}),
    "stream-blocks-rev": (70, 1, 5, 9, {"reverse": True}),
    "stream-blocks-lengths": (70, 1, 5, 9, {"lengths": [41]}),
    # ... except with both lengths and reverse: then by chunks of steps, T * B beyond 1024 rows per
    # thread in several chunks
    "long-lengths-rev": (700, 4, 3, 9, {"lengths": [700, 513, 0, 300], "reverse": True}),
    # B >= 32: the forward projects its input step by step (blocks of one step), except with both
    # lengths and reverse
    "batch": (6, 33, 10, 21, {}),
    "batch-rev": (6, 33, 10, 21, {"reverse": True}),
    "batch-lengths": (6, 33, 10, 21, {"lengths": [b % 7 for b in range(33)]}),
    "batch-lengths-rev": (6, 33, 10, 21, {"lengths": [b % 7 for b in range(33)], "reverse": True}),
}

compiled = pytest.mark.parametrize("backend", COMPILED)


def awkward(a):
    """The same values in a non-C-contiguous array: Fortran order for 2-D / 3-D, a strided view else."""
    if a is None:
        return None
    if a.ndim >= 2:
        return np.asfortranarray(a)
    big = np.zeros(2 * a.shape[0], a.dtype)
    big[::2] = a
    return big[::2]


def case_problem(kind, opts, case, dtype):
    """The problem of `case`, with a seed that keeps relu pre-activations off the kink at 0."""
    T, B, I, H, o = CASES[case]
    lengths = None if "lengths" not in o else np.array(o["lengths"], dtype=np.int64)
    reverse = o.get("reverse", False)
    margin = 1e-5 if dtype == np.float32 else 1e-9
    for seed in range(50):
        p = make_problem(kind, T, B, I, H, dtype=dtype, seed=seed,
                         h0=o.get("h0", True), bias=o.get("bias", True))
        p64 = {k: None if v is None else v.astype(np.float64) for k, v in p.items()}
        if relu_margin(kind, opts, p64, reverse, lengths) > margin:
            break
    return p, lengths, reverse, o.get("layout"), seed


@compiled
@pytest.mark.parametrize("case", CASES.keys())
@pytest.mark.parametrize("kind,opts", KERNELS, ids=KERNEL_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_matches_reference(backend, dtype, kind, opts, case):
    p, lengths, reverse, layout, seed = case_problem(kind, opts, case, dtype)
    ref = run(kind, opts, p, "numpy", reverse=reverse, lengths=lengths, seed=seed + 100)
    if layout == "fortran":
        p = {k: awkward(v) for k, v in p.items()}
    res = run(kind, opts, p, backend, reverse=reverse, lengths=lengths, seed=seed + 100)
    for name in RESULT_NAMES:
        assert_close(res[name], ref[name], dtype, name)
    if lengths is not None:   # padded steps: exactly zero output and input gradient
        padded = np.arange(res["out"].shape[0])[:, None] >= lengths[None, :]
        assert not res["out"][padded].any() and not res["dx"][padded].any()


@compiled
@pytest.mark.parametrize("kind,opts", KERNELS, ids=KERNEL_IDS)
def test_padded_upstream_gradients_are_ignored(backend, kind, opts):
    """d_out at padded steps (even NaN there) must not reach any gradient."""
    p, lengths, reverse, _, seed = case_problem(kind, opts, "lengths-rev", np.float64)
    res = run(kind, opts, p, backend, reverse=reverse, lengths=lengths, seed=seed)
    T, B = res["out"].shape[:2]
    padded = np.arange(T)[:, None] >= lengths[None, :]
    d_out = np.random.default_rng(seed).standard_normal(res["out"].shape)
    d_hn = np.random.default_rng(seed + 1).standard_normal(res["h_n"].shape)
    clean = run(kind, opts, p, backend, reverse=reverse, lengths=lengths,
                d_out=np.where(padded[..., None], 0.0, d_out), d_hn=d_hn)
    dirty = run(kind, opts, p, backend, reverse=reverse, lengths=lengths,
                d_out=np.where(padded[..., None], np.nan, d_out), d_hn=d_hn)
    for name in RESULT_NAMES[2:]:
        assert_close(dirty[name], clean[name], np.float64, name)


def test_c_backend_is_built():
    """The compiled backend must be importable wherever the tests run (CI builds it in place)."""
    assert "c" in fastrnn.backends(), "the compiled backend 'c' is missing: build the extension"


@compiled
@pytest.mark.parametrize("kind,opts", KERNELS, ids=KERNEL_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_thread_count_does_not_change_results(backend, dtype, kind, opts, restore_threads):
    p, lengths, reverse, _, seed = case_problem(kind, opts, "medium-rev-lengths", dtype)
    results = []
    for n in (1, 2):
        fastrnn.set_num_threads(n)
        assert fastrnn.get_num_threads() == n
        results.append(run(kind, opts, p, backend, reverse=reverse, lengths=lengths, seed=seed))
    for name in RESULT_NAMES:
        assert_close(results[1][name], results[0][name], dtype, name)


@compiled
@pytest.mark.parametrize("kind,opts", KERNELS, ids=KERNEL_IDS)
def test_concurrent_calls_match_sequential_calls(backend, kind, opts):
    """Forward + backward from 4 Python threads at once == the same calls one at a time."""
    jobs = []
    for i in range(4):
        p = make_problem(kind, 12, 8, 16, 32, dtype=np.float64 if i % 2 else np.float32, seed=i)
        lengths = np.random.default_rng(i).integers(0, 13, 8) if i >= 2 else None
        jobs.append((p, lengths, bool(i % 2)))

    def work(job):
        p, lengths, reverse = job
        res = run(kind, opts, p, backend, reverse=reverse, lengths=lengths, seed=7)
        res.pop("cache")
        return res

    sequential = [work(job) for job in jobs]
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(2):
            concurrent_results = list(pool.map(work, jobs))
            for job, seq, con in zip(jobs, sequential, concurrent_results):
                dtype = job[0]["x"].dtype
                for name in RESULT_NAMES:
                    assert_close(con[name], seq[name], dtype, name)


@pytest.mark.skipif("c" not in COMPILED, reason="needs the compiled backend")
@pytest.mark.parametrize("bad", ["dtype", "fortran", "readonly-output", "none", "lengths-int32", "too-few"])
def test_kernel_entry_points_refuse_wrong_buffers(bad):
    """The binding's own guard (behind fastrnn.functional's validation): a buffer of another dtype,
    not C-contiguous, a read-only output, a None or a missing one, or lengths of another integer type
    raise, never reach the C kernel."""
    from fastrnn import _ckernels

    T, B, I, H = 3, 2, 4, 5
    f = np.float32

    def buffers():   # out, h_n, states, xproj, x, h0, w_ih, w_hh, b_ih, b_hh
        return [np.zeros((T, B, H), f), np.zeros((B, H), f), np.zeros((T + 1, B, H), f), np.zeros((T, B, H), f),
                np.ones((T, B, I), f), np.zeros((B, H), f), np.ones((H, I), f), np.ones((H, H), f),
                np.zeros(H, f), np.zeros(H, f)]

    arrays = buffers()
    lengths = None
    if bad == "dtype":
        arrays[7] = arrays[7].astype(np.float64)
    elif bad == "fortran":
        arrays[6] = np.asfortranarray(arrays[6])
    elif bad == "readonly-output":
        arrays[0].setflags(write=False)
    elif bad == "none":
        arrays[8] = None
    elif bad == "too-few":
        arrays = arrays[:-1]
    else:
        lengths = np.full(B, T, np.int32)
    with pytest.raises((TypeError, ValueError)):
        _ckernels._rnn_fwd(tuple(arrays), lengths, T, B, I, H, 0, 0, 1, False)
    arrays = buffers()
    _ckernels._rnn_fwd(tuple(arrays), None, T, B, I, H, 0, 0, 1, False)     # the same call, well formed
    np.testing.assert_allclose(arrays[0][0], np.tanh(4.0), rtol=1e-6)     # x w_ih^T = 4 at step 0
