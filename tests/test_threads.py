"""The "c" backend gives bitwise-identical results at any thread count (README: Determinism).

Sizes are large enough that the kernels really split the work (per-step recurrent work above the
threshold for a second thread, big products split by row blocks); 3 threads give uneven slices.
set_num_threads caps the count at the machine's CPUs, so on a smaller machine the tests set the
kernels' count directly (`use_threads`): oversubscribed, but the same slicing as on a larger one."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastrnn
from fastrnn import _config
from conftest import KERNEL_IDS, KERNELS, RESULT_NAMES, make_problem, run

pytestmark = pytest.mark.skipif("c" not in fastrnn.backends(), reason="compiled backend not built")


def use_threads(n):
    """The kernels' thread count, even above set_num_threads' cap (max_threads())."""
    _config._state["threads"] = n


def assert_same_at_1_2_3_threads(kind, opts, p, **kwargs):
    """The "c" backend's results (outputs, h_n, every gradient) on problem p, bitwise the same at
    1, 2 and 3 threads."""
    results = []
    for n in (1, 2, 3):
        use_threads(n)
        results.append(run(kind, opts, p, "c", **kwargs))
    for other in results[1:]:
        for name in RESULT_NAMES:
            assert np.array_equal(other[name], results[0][name]), name


@pytest.mark.parametrize("kind,opts", KERNELS, ids=KERNEL_IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("T,B,lengths,reverse", [(8, 32, None, False), (8, 32, [8, 0, 5, 3, 8, 1, 7, 2] * 4, True),
                                                  (150, 32, None, True), (1, 32, None, False), (1, 40, None, False)],
                         # long: projection in chunks; step: T = 1 at B = 32, the weights read in place (tiles
                         # of dot products), the projection step by step (loop.h: step_projection);
                         # step-packed: B = 40, the weights packed (loop.c: direct_step)
                         ids=["full", "lengths-reverse", "long-reverse", "step", "step-packed"])
def test_bitwise_identical_across_thread_counts(kind, opts, dtype, T, B, lengths, reverse, restore_threads):
    I, H = 70, 200
    p = make_problem(kind, T, B, I, H, dtype, seed=3)
    lengths = None if lengths is None else np.array(lengths)
    assert_same_at_1_2_3_threads(kind, opts, p, reverse=reverse, lengths=lengths)


@pytest.mark.parametrize("kind,opts", KERNELS, ids=KERNEL_IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_bitwise_identical_across_thread_counts_few_rows(kind, opts, dtype, restore_threads):
    """A single step of a few sequences (B <= 8: the products read the weights in place, the threads
    share their columns), large enough to use every thread."""
    T, B, I, H = 1, 5, 70, 600
    p = make_problem(kind, T, B, I, H, dtype, seed=4)
    assert_same_at_1_2_3_threads(kind, opts, p)


@pytest.mark.parametrize("kind,opts", KERNELS, ids=KERNEL_IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("lengths,reverse", [(None, False), (None, True), ([1030], False), ([1030], True)],
                         ids=["blocks", "blocks-reverse", "blocks-lengths", "chunks"])
def test_bitwise_identical_across_thread_counts_at_a_chunk_boundary(kind, opts, dtype, lengths, reverse,
                                                                   restore_threads):
    """With both lengths and reverse the input projection is made in chunks of about 1024 rows a
    thread (loop.h: chunk_steps), so at B = 1 and T = 1030 one thread's chunks would end 6 rows short
    of T, and rows that few take the product's in-place path, whose sums differ from the packed one's
    when I > 256 (gemm.h: FR_DIRECT). The last chunk takes them (chunk_end); before, they differed
    from 2 threads'. Otherwise each thread projects its own units by blocks of 32 steps (the last one
    6)."""
    T, B, I, H = 1030, 1, 300, 16
    p = make_problem(kind, T, B, I, H, dtype, seed=5)
    lengths = None if lengths is None else np.array(lengths)
    assert_same_at_1_2_3_threads(kind, opts, p, reverse=reverse, lengths=lengths)


@pytest.mark.parametrize("user,expected", [({}, ("10000", None)),
                                           ({"OMP_WAIT_POLICY": "ACTIVE"}, (None, "ACTIVE")),
                                           ({"GOMP_SPINCOUNT": "5"}, ("5", None))],
                         ids=["default", "user-policy", "user-spincount"])
def test_import_sets_a_short_spin_unless_the_user_chose(user, expected):
    """`import fastrnn` sets GOMP_SPINCOUNT=10000 (README: Threads) before the OpenMP runtime loads,
    and leaves a user's OMP_WAIT_POLICY or GOMP_SPINCOUNT alone."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(user)
    code = ("import os, fastrnn; fastrnn.backends(); "
            "print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd="/",
                         check=True).stdout.split()
    assert tuple(None if v == "None" else v for v in out) == expected
