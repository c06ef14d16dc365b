"""The thread-scaling probe around the benchmark workers (benches/probe.py, orchestrate.measure,
run.scaling_notes).

    pytest benches/test_probe.py
"""
import importlib.util
import math

import pytest

from benches import orchestrate, probe, run, workloads

HAVE_THREADPOOLCTL = importlib.util.find_spec("threadpoolctl") is not None


def test_no_probe_at_one_thread():
    assert probe.scaling(1) is None


def test_no_probe_without_threadpoolctl(monkeypatch):
    monkeypatch.setattr(probe, "_limits", lambda: None)
    assert probe.scaling(2) is None


@pytest.mark.skipif(not HAVE_THREADPOOLCTL, reason="threadpoolctl not installed (the 'threads' extra)")
def test_probe_measures_a_ratio():
    """t(1) / t(2) of a real product: finite and positive; on any machine between a slowed-down
    second thread (well above 0.2) and twice the threads' ideal."""
    value = probe.scaling(2, n=128, calls=3)
    assert value is not None and math.isfinite(value) and 0.2 < value < 4


@pytest.mark.parametrize("value, threads, slow", [(1.5, 2, True), (1.69, 2, True), (1.71, 2, False),
                                                  (2.0, 2, False), (3.0, 4, True), (None, 2, False)])
def test_is_slow(value, threads, slow):
    assert probe.is_slow(value, threads) is slow


def test_notes_name_the_slow_rounds():
    probes = {"fastrnn": [(1.95, 1.9), (1.4, 1.92)], "torch": [(1.9, None), (None, None)]}
    (note,) = run.scaling_notes(probes, 2)
    assert "1.40-1.95x" in note
    assert "around 1 of 4 workers" in note and note.endswith("fastrnn round 2")


def test_notes_without_slow_rounds_or_probes():
    (note,) = run.scaling_notes({"gemm": [(1.9, 1.95)]}, 2)
    assert "1.90-1.95x" in note and "under" not in note
    assert run.scaling_notes({"gemm": [(None, None)] * 3}, 2) == []
    assert run.scaling_notes({}, 1) == []


@pytest.mark.parametrize("probe_on", [True, False])
def test_measure_probes_around_every_worker(probe_on):
    """One (before, after) pair per round and contender; None for both with probe=False."""
    ws = [workloads.Workload("rnn", "2x1x3x4", "fwd")]
    results = orchestrate.measure({"gemm": ws}, threads=2, rounds=2, min_time=0.01, probe=probe_on)
    assert not results.problems
    pairs = results.scaling["gemm"]
    assert len(pairs) == 2 and all(len(p) == 2 for p in pairs)
    if not probe_on or not HAVE_THREADPOOLCTL:
        assert pairs == [(None, None), (None, None)]
    else:
        assert all(v is not None and v > 0 for p in pairs for v in p)
