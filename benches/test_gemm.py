"""benches/gemm.c builds for every level this CPU runs, with the flags setup.py gives it, and reports
only checked results.

    pytest benches/test_gemm.py

par_gemm on small and odd shapes (both layouts of A and of B, 1 and 2 threads) must pass the program's own check
of one element against a plain sum and report a positive time; so must the B = 1 step loop (every
column of its product checked), with more threads than slices of units too; the peak loop reports
GFLOPS; bad arguments exit with status 2. Needs a C compiler with OpenMP (skipped without one).
"""
import shutil
import subprocess

import pytest

from benches import gemm

pytestmark = pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler")


def _cpu_levels():
    try:
        from fastrnn import _ckernels
    except ImportError:
        return ["baseline"]
    return [lv for lv in _ckernels.simd_levels()[2] if lv != "native"] or ["baseline"]


@pytest.fixture(scope="module", params=["avx512", "avx2", "baseline"])
def exe(request, tmp_path_factory):
    if request.param not in _cpu_levels():
        pytest.skip(f"this CPU does not run the {request.param} level")
    return gemm.build(str(tmp_path_factory.mktemp("gemm")), request.param)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("ta,tb", [(0, 0), (1, 0), (0, 1)])
@pytest.mark.parametrize("mnk", [(7, 5, 3), (13, 37, 9), (97, 131, 401), (300, 70, 1000)])
def test_par_gemm_checked(exe, threads, ta, tb, mnk):
    M, N, K = mnk
    res = gemm.run_c(exe, "par", threads, M, N, K, ta, tb, 2)
    assert (res["M"], res["N"], res["K"], res["ta"], res["tb"], res["threads"]) == (M, N, K, ta, tb, threads)
    assert res["seconds"] > 0


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("H,G", [(8, 1), (40, 3), (131, 1), (256, 3)])
def test_step_loop_checked(exe, threads, H, G):
    res = gemm.run_c(exe, "step", threads, H, G, 20, 2)
    assert (res["threads"], res["H"], res["G"], res["steps"]) == (threads, H, G, 20)
    assert res["step_seconds"] > 0 and res["read_seconds"] > 0
    assert res["bytes_per_thread"] >= 4 * G * H * H // threads
    if H == 8:      # one or two chunks of units: idle threads do not dilute a working thread's share
        assert res["bytes_per_thread"] >= 4 * G * H * H


def test_peak_reports_gflops(exe):
    res = gemm.run_c(exe, "peak", 1)
    assert res["sse_gflops"] > 0
    assert res["kernel_vector_bytes"] in (16, 32, 64)


@pytest.mark.parametrize("args", [[], ["par", "1", "0", "5", "5", "0", "0", "1"], ["par", "1", "5", "5", "5", "0", "1"], ["peak"], ["nonsense", "1"],
                                  ["step", "2", "0", "3", "10", "1"], ["step", "2", "8", "3", "10"]])
def test_bad_arguments_exit_2(exe, args):
    assert subprocess.run([exe, *args], capture_output=True).returncode == 2


def test_products_are_the_training_step_shapes():
    names = [p[0] for p in gemm.products("gru", gemm.workloads.SHAPES["gnmt"])]
    assert names == ["input projection", "weight gradient", "dx"]
    assert gemm.products("gru", gemm.workloads.SHAPES["gnmt"])[0][1:] == (3200, 1536, 512, 0, 1)


def test_steps_only_at_a_batch_of_one():
    assert gemm.steps("gru", gemm.workloads.SHAPES["stream-512"]) == (1000, 512, 3, 512)
    assert gemm.steps("rnn", gemm.workloads.SHAPES["gnmt"]) is None


def test_numpy_worker_times_every_shape():
    out = gemm.numpy_worker(1, [(9, 7, 5, 0, 0), (9, 7, 5, 1, 0), (9, 7, 5, 0, 1)], 2)
    assert len(out) == 3 and all(t > 0 for t in out)
