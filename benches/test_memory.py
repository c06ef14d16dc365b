"""The memory report of benches.run --memory (memory.memory_step, orchestrate.measure_memory).

    pytest benches/test_memory.py
"""
import numpy as np
import pytest

from benches import contenders, memory, orchestrate, run, workloads


def assert_minimum_plus_one_state(cache, w):
    """cache == the minimum + h0: states (T+1, B, H) [+ gates (T, B, 4H)], each array of 4 KiB or more
    with at most 64 bytes before it to start on a cache line (fastrnn/_ckernels.pyx: empty_aligned)."""
    T, B, I, H = w.dims
    extra = cache - (memory.min_bytes_per_step(w) * T + B * H * 4)
    assert 0 <= extra <= 64 * 2, extra


@pytest.mark.parametrize("cell", workloads.CELLS)
def test_cache_is_the_minimum_plus_one_state(cell):
    w = workloads.Workload(cell, "20x3x5x8", "train")
    assert_minimum_plus_one_state(contenders.CONTENDERS["fastrnn"].cache_bytes(w, workloads.make_inputs(w)), w)


def test_cache_nbytes_skips_the_callers_arrays_and_counts_shared_once():
    mine = np.zeros(100)
    a = np.zeros(10)
    data = {"x": mine, "view": mine[:5], "a": a, "again": [a, a[2:]], "n": None, "flag": True}
    assert memory.cache_nbytes(data, (mine,)) == a.nbytes


def test_memory_step_in_a_worker():
    """A step whose cache (4 MiB) must show in the resident memory: the RSS peak, where it is read
    exactly (VmHWM reset by /proc/self/clear_refs), holds at least the cache, which the step writes."""
    ws = [workloads.Workload("gru", "200x16x64x64", "train")]
    results = orchestrate.measure_memory({"fastrnn": ws, "onnxruntime": ws} if "onnxruntime" in contenders.CONTENDERS
                                         else {"fastrnn": ws}, threads=1)
    assert not results.problems
    rec = results.memory["fastrnn"][ws[0].key]
    assert_minimum_plus_one_state(rec["cache"], ws[0])
    assert rec["traced_peak"] >= rec["cache"]  # the step allocates its cache, and more
    if rec["rss_method"] == "VmHWM after clear_refs":
        assert rec["rss_peak"] >= rec["cache"], rec
    assert rec["traced_retained"] >= 0
    assert "onnxruntime" not in results.memory  # no training: a gap


def test_run_memory_table(capsys):
    run.main(["--memory", "--shapes", "tiny", "--contenders", "fastrnn,gemm", "--threads", "1"])
    out = capsys.readouterr().out
    assert "fastrnn cache" in out and "fastrnn RSS peak" in out and "gemm" not in out.split("GRU")[1].split("\n")[2]
