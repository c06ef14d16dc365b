"""benches/gemm.c builds with the extension's flags and reports only checked results.

    pytest benches/test_gemm.py

par_gemm on small and odd shapes (both A layouts, 1 and 2 threads) must pass the program's own check
of one element against a plain sum and report a positive time; the peak loop reports GFLOPS; bad
arguments exit with status 2. Needs a C compiler with OpenMP (skipped without one).
"""
import shutil
import subprocess

import pytest

from benches import gemm

pytestmark = pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler")


@pytest.fixture(scope="module")
def exe(tmp_path_factory):
    return gemm.build(str(tmp_path_factory.mktemp("gemm")))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("ta", [0, 1])
@pytest.mark.parametrize("mnk", [(7, 5, 3), (13, 37, 9), (97, 131, 401), (300, 70, 1000)])
def test_par_gemm_checked(exe, threads, ta, mnk):
    M, N, K = mnk
    res = gemm.run_c(exe, "par", threads, M, N, K, ta, 2)
    assert (res["M"], res["N"], res["K"], res["ta"], res["threads"]) == (M, N, K, ta, threads)
    assert res["seconds"] > 0


def test_peak_reports_gflops(exe):
    res = gemm.run_c(exe, "peak", 1)
    assert res["avx2_gflops"] > 0
    assert res["kernel_vector_bytes"] in (16, 32, 64)


@pytest.mark.parametrize("args", [[], ["par", "1", "0", "5", "5", "0", "1"], ["peak"], ["nonsense", "1"]])
def test_bad_arguments_exit_2(exe, args):
    assert subprocess.run([exe, *args], capture_output=True).returncode == 2


def test_products_are_the_training_step_shapes():
    names = [p[0] for p in gemm.products("gru", gemm.harness.SHAPES["gnmt"])]
    assert names == ["input projection", "weight gradient", "dx"]
    assert gemm.products("gru", gemm.harness.SHAPES["gnmt"])[0][1:] == (3200, 1536, 512, 0)


def test_numpy_worker_times_every_shape():
    out = gemm.numpy_worker(1, [(9, 7, 5, 0), (9, 7, 5, 1)], 2)
    assert len(out) == 2 and all(t > 0 for t in out)
