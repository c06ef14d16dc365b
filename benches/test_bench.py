"""pytest-benchmark over the workloads of benches.workloads and benches.contenders (the same builders, the same inputs).

    pytest benches/ --benchmark-only                                # shapes small and medium
    FASTRNN_BENCH_SHAPES=all pytest benches/ --benchmark-only       # every SPEC §4 shape (or e.g. small,gnmt)
    pytest benches/ --benchmark-only -k "gru and train" --benchmark-group-by=group
    pytest benches/ --benchmark-only --benchmark-autosave           # then --benchmark-compare

Run it from the repository root, as `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE pytest ...` for numbers
worth keeping. Contenders: every backend in `fastrnn.backends()` (named "fastrnn-c", "fastrnn-numpy"),
torch when installed, and gemm (the GEMM-bound time). The NumPy backend is skipped above
contenders.REFERENCE_MAX_GFLOP per call. Each group (cell, shape, pass) compares them.

Everything here runs in one process, where the thread pools of different libraries can slow each
other down (SPEC §4): this is for tracking times across changes. Comparisons between libraries come
from `python -m benches.run`, which times every contender in its own process.
"""
import importlib.util
import os

import pytest

import fastrnn
from benches import contenders, workloads

SHAPES = workloads.parse_shapes(os.environ.get("FASTRNN_BENCH_SHAPES", ",".join(workloads.QUICK_SHAPES)))

CONTENDERS = {f"fastrnn-{b}": contenders.FastRNN(b, slow=(b == "numpy")) for b in fastrnn.backends()}
if importlib.util.find_spec("torch") is not None:
    CONTENDERS["torch"] = contenders.CONTENDERS["torch"]
CONTENDERS["gemm"] = contenders.CONTENDERS["gemm"]

_ready = set()


@pytest.mark.parametrize("phase", workloads.PASSES + workloads.STEP_PASSES)
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("cell", workloads.CELLS)
@pytest.mark.parametrize("name", list(CONTENDERS))
def test_bench(benchmark, name, cell, shape, phase):
    contender = CONTENDERS[name]
    w = workloads.Workload(cell, shape, phase)
    if contenders.too_slow(contender, w):
        pytest.skip(f"{name}: {w.gflop:.0f} GFLOP per call is above {contenders.REFERENCE_MAX_GFLOP:g}")
    if name not in _ready:
        contender.setup(fastrnn.get_num_threads())
        _ready.add(name)
    try:
        fn = contender.build(w, workloads.make_inputs(w))
    except contenders.Unsupported as exc:
        pytest.skip(f"{name}: {exc}")
    fn()  # warm-up
    benchmark.group = f"{cell} {shape} {phase}"
    benchmark(fn)
