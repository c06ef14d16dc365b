"""How well the machine runs `threads` threads right now: probed around every benchmark worker.

    scaling(threads)   t(1 thread) / t(threads) of one float32 GEMM (PROBE_N cubed, NumPy's BLAS
                       through threadpoolctl); None where it cannot be probed
    SLOW_SCALING       the fraction of `threads` under which a probe counts as slow

Why. On the 2-vCPU VMs these benchmarks run on, what a second thread adds comes and goes, from
outside the process (one thread's speed stays put): measured on an AMD EPYC Zen 4 (2026-12-04), fastrnn's RNN forward at 100 x 64 x 256 x 256
took 16.9-17.3 ms at 1 thread in every process, and at 2 threads either 9.0-9.6 ms (1.8x) or
12.3-13.0 ms (1.37x), the same all through a process of 40 s and changing from one process to the
next, for fastrnn's NumPy API and its PyTorch modules alike; this probe, run just before and after each
of 16 such processes, gave 1.24-1.61x next to the slow ones and 1.85-2.02x next to the fast ones,
but for three probes taken as the mode changed (hence SLOW_SCALING: 1.7x at 2 threads). A worker process of a round takes
20-40 s, so one contender's rounds can all fall in the slow mode and another's in the fast one: the
medians then compare the modes, not the libraries. benches.orchestrate.measure probes before and
after each worker and benches.run lists the rounds whose probe was slow under its table.
"""
import statistics
import time

import numpy as np

PROBE_N = 384          # 113 MFLOP a call: about 1 ms at 1 thread on these machines
PROBE_CALLS = 7        # calls at each thread count, interleaved; the medians are compared
SLOW_SCALING = 0.85    # a probe under 0.85 * threads counts as slow (1.7x at 2 threads)


def _limits():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits


def scaling(threads, n=PROBE_N, calls=PROBE_CALLS):
    """t(1 thread) / t(`threads`) of an n x n x n float32 matrix product (NumPy's BLAS), the median
    of `calls` calls at each count, taken alternately; None if threads < 2 or threadpoolctl is not
    installed (it sets the BLAS's thread count for the call)."""
    limits = _limits()
    if threads < 2 or limits is None:
        return None
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), np.float32)
    times = {1: [], threads: []}
    for _ in range(calls + 1):                      # the first call at each count is a warm-up
        for t in (1, threads):
            with limits(limits=t, user_api="blas"):
                start = time.perf_counter()
                np.matmul(a, b, out=out)
                times[t].append(time.perf_counter() - start)
    one, many = (statistics.median(times[t][1:]) for t in (1, threads))
    return one / many if many > 0 else None


def is_slow(value, threads):
    """True when a probe's scaling is under SLOW_SCALING * threads."""
    return value is not None and value < SLOW_SCALING * threads
