"""What a contender is (benches.contenders registers them). A contender is an object with

    setup(threads) -> dict   once per process: import the library (ImportError = not installed), set its
                             thread count and denormal flushing; returns what to report (versions...)
    build(w, inputs) -> fn   the zero-argument callable to time for a benches.workloads.Workload and its
                             make_inputs(w); raise Unsupported for workloads the library does not have
                             (e.g. ONNX Runtime has no training)
    slow                     True: skipped above REFERENCE_MAX_GFLOP (see benches.contenders.too_slow)
    memory                   False: left out of benches.run --memory (no training step, or not a library)
"""

__all__ = ["Unsupported"]


class Unsupported(Exception):
    """The contender has no such workload: shown as a gap, without an error message."""
