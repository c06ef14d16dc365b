"""The memory of one training step (SPEC §4; `python -m benches.run --memory`).

    memory_step()      in a fresh worker process (`python -m benches.worker --memory`, started by
                       benches.orchestrate.measure_memory with MEMORY_WORKER_ENV, one process per
                       contender and workload): the peak RSS above the RSS before the step,
                       tracemalloc's peak of NumPy's allocations, and the bytes of fastrnn's forward
                       cache
    cache_nbytes()     the bytes a backend's forward cache keeps alive beyond the caller's arrays
    min_bytes_per_step()  what the backward needs from the forward at the least (see benches/run.py)
"""
import gc
import sys

import numpy as np

from .workloads import Workload, make_inputs


def min_bytes_per_step(w):
    """What the backward needs from the forward, per time step, at the least (see benches/run.py):
    GRU the state h_t and the gates r, z, n and W_hn h + b_hn (5·B·H values); RNN the state h_t
    (B·H: g'(a) is a function of h = g(a) for tanh and relu)."""
    T, B, I, H = w.dims
    return (5 if w.cell == "gru" else 1) * B * H * np.dtype(w.dtype).itemsize


def cache_nbytes(data, caller_arrays=()):
    """Bytes kept alive by the ndarrays in `data` (a backend's cache: a dict, list or array, nested)
    that are not the caller's arrays nor views of them: a view keeps its whole base array alive, so
    each base array counts once, in full."""
    callers = [a for a in caller_arrays if isinstance(a, np.ndarray)]
    bases, total = set(), 0
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, np.ndarray):
            if any(np.may_share_memory(item, a) for a in callers):
                continue
            base = item
            while isinstance(base.base, np.ndarray):
                base = base.base
            if id(base) not in bases:
                bases.add(id(base))
                total += base.nbytes
    return total


def _proc_status_kib(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _reset_peak_rss():
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0); False if impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def memory_step(contender, w):
    """Memory of one training step (forward + backward) of `w`, measured in this (fresh) process.

    A warm-up step with T = 1 and the same B, I, H loads the libraries, starts their thread pools and
    makes their per-call buffers of a size independent of T; then the step's arrays are made, the
    peak-RSS mark is reset to the current RSS and the step runs once, under tracemalloc (which sees
    NumPy's allocations, not a C library's malloc nor torch's allocator). Returns bytes:
        rss_peak         peak resident memory during the step above what was resident before it
        rss_retained     resident memory after the step (its results dropped) above the same
        traced_peak      peak of the memory tracemalloc traced during the step (NumPy arrays)
        traced_retained  what tracemalloc still sees allocated after the step (buffers kept for reuse)
        cache            (fastrnn only) what the forward's cache keeps beyond the caller's arrays
    Run it in a worker with MEMORY_WORKER_ENV (benches.orchestrate.measure_memory does)."""
    import resource
    import tracemalloc

    T, B, I, H = w.dims
    w_train = Workload(w.cell, w.shape, "train", w.dtype)
    w1 = Workload(w.cell, f"1x{B}x{I}x{H}", "train", w.dtype)
    contender.build(w1, make_inputs(w1))()
    inputs = make_inputs(w_train)
    fn = contender.build(w_train, inputs)
    record = {}
    gc.collect()
    tracemalloc.start()
    exact = _reset_peak_rss()
    rss_before = _proc_status_kib("VmRSS") if exact else None
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fn()
    gc.collect()
    traced_now, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    hwm = _proc_status_kib("VmHWM") if exact else None
    if hwm is not None and rss_before is not None:
        record["rss_peak"] = max(0, hwm - rss_before) * 1024
        record["rss_retained"] = max(0, _proc_status_kib("VmRSS") - rss_before) * 1024
        record["rss_method"] = "VmHWM after clear_refs"
    else:  # the process's high-water mark can only grow: an underestimate if it was higher before
        scale = 1 if sys.platform == "darwin" else 1024
        record["rss_peak"] = max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - maxrss_before) * scale
        record["rss_method"] = "ru_maxrss difference"
    record["traced_peak"], record["traced_retained"] = traced_peak, traced_now
    if hasattr(contender, "cache_bytes"):  # after the step: its allocations must not be in the heap before
        record["cache"] = contender.cache_bytes(w_train, inputs)
    return record


# glibc malloc: every block from 64 KiB up is its own mmap, returned to the system when freed (a fixed
# threshold also turns off glibc's adaptive one), so that RSS follows the live large arrays of every
# library alike instead of freed blocks that stay in the heap. Set in the memory workers only.
MEMORY_WORKER_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "131072"}
