"""The timing loop of every worker (SPEC §4): `time_call` makes warm-up calls (at least WARMUP_CALLS
and WARMUP_S seconds), then repeats the call until `min_time` and `min_runs` (3), with the garbage
collector off, and returns the median. benches.orchestrate.measure takes the median of the rounds.
"""
import gc
import statistics
import time


WARMUP_S = 0.2  # the first calls in a fresh worker run slow for every contender (caches, pages, clocks):
WARMUP_CALLS = 2  # seen here, fastrnn's GRU gnmt forward took 74, 67, 66, 56, 60, then 53-55 ms


def time_call(fn, min_time=0.3, min_runs=3):
    """(median seconds, runs) of fn(): warm-up calls (at least WARMUP_CALLS and WARMUP_S seconds), then
    calls until both min_runs and min_time."""
    start, calls = time.perf_counter(), 0
    while calls < WARMUP_CALLS or time.perf_counter() - start < WARMUP_S:
        fn()
        calls += 1
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        times = []
        while len(times) < min_runs or sum(times) < min_time:
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    finally:
        if gc_was_enabled:
            gc.enable()
    return statistics.median(times), len(times)
