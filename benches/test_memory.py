"""The memory report of benches.run --memory (memory.memory_step, orchestrate.measure_memory).

    pytest benches/test_memory.py
"""
import numpy as np
import pytest

from benches import contenders, memory, orchestrate, run, workloads


@pytest.mark.parametrize("cell", workloads.CELLS)
def test_cache_is_the_minimum_plus_one_state(cell):
    w = workloads.Workload(cell, "20x3x5x8", "train")
    T, B, I, H = w.dims
    cache = contenders.CONTENDERS["fastrnn"].cache_bytes(w, workloads.make_inputs(w))
    state = B * H * 4
    assert cache == memory.min_bytes_per_step(w) * T + state  # states (T+1, B, H) [+ gates (T, B, 4H)]


def test_cache_nbytes_skips_the_callers_arrays_and_counts_shared_once():
    mine = np.zeros(100)
    a = np.zeros(10)
    data = {"x": mine, "view": mine[:5], "a": a, "again": [a, a[2:]], "n": None, "flag": True}
    assert memory.cache_nbytes(data, (mine,)) == a.nbytes


def test_memory_step_in_a_worker():
    ws = [workloads.Workload("gru", "30x4x16x16", "train")]
    results = orchestrate.measure_memory({"fastrnn": ws, "onnxruntime": ws} if "onnxruntime" in contenders.CONTENDERS
                                         else {"fastrnn": ws}, threads=1)
    assert not results.problems
    rec = results.memory["fastrnn"][ws[0].key]
    assert rec["cache"] == memory.min_bytes_per_step(ws[0]) * 30 + 4 * 16 * 4
    assert rec["traced_peak"] >= rec["cache"]  # the step allocates its cache, and more
    assert rec["rss_peak"] >= 0 and rec["traced_retained"] >= 0
    assert "onnxruntime" not in results.memory  # no training: a gap


def test_run_memory_table(capsys):
    run.main(["--memory", "--shapes", "tiny", "--contenders", "fastrnn,gemm", "--threads", "1"])
    out = capsys.readouterr().out
    assert "fastrnn cache" in out and "fastrnn RSS peak" in out and "gemm" not in out.split("GRU")[1].split("\n")[2]
