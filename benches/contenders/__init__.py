"""The contenders and their registry (SPEC §4). CONTENDERS: name -> Contender (the protocol is in
benches/contenders/base.py), each building the callable to time for a workload, once:

    fastrnn        fastrnn.functional with backend=None (the fastest backend built)    fastrnn_.py
    reference      the same with backend="numpy" (slow: see too_slow)                  fastrnn_.py
    torch          torch.nn.RNN / torch.nn.GRU with the same weights                   torch_.py
    fastrnn.torch  fastrnn.torch.RNN / GRU and the cells, set up as torch is           torch_modules.py
    onnxruntime    ONNX Runtime's GRU operator (linear_before_reset=1), GRU forward in  onnxruntime_.py
                   float32 only; registered where onnx and onnxruntime are installed
                   (pip install ".[bench]")
    gemm           the GEMM-bound time: the same BLAS (NumPy's matmul) doing exactly    gemm_bound.py
                   the GEMM shapes of SPEC §4 and nothing else

The libraries are imported by setup() in the worker process, never here: a contender whose library
is not installed is registered all the same (its worker reports it missing and the table shows a gap),
except onnxruntime, which is absent from CONTENDERS where onnx or onnxruntime is not installed.
"""
import importlib.util

from .base import Unsupported
from .fastrnn_ import FastRNN
from .gemm_bound import Gemm
from .onnxruntime_ import OnnxRuntime
from .torch_ import Torch
from .torch_modules import TorchModules

__all__ = ["CONTENDERS", "SUBJECT", "BOUND", "REFERENCE_MAX_GFLOP", "too_slow", "Unsupported",
           "FastRNN", "Gemm", "OnnxRuntime", "Torch", "TorchModules"]

# The NumPy reference is slow; above this much GEMM work per call it is skipped (run.py can change it).
REFERENCE_MAX_GFLOP = 20.0

# The registry: name -> contender, in the order of the table's columns. To add a peer, write a class
# like Torch (benches/contenders/torch_.py) and register it here; its build() raises Unsupported for
# what it does not have.
# ONNX Runtime is a default contender only where it is installed (pip install fastrnn[bench]).
CONTENDERS = {
    "fastrnn": FastRNN(None),
    "reference": FastRNN("numpy", slow=True),
    "torch": Torch(),
    "fastrnn.torch": TorchModules(),
}
if importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None:
    CONTENDERS["onnxruntime"] = OnnxRuntime()
CONTENDERS["gemm"] = Gemm()
# The table is about SUBJECT; BOUND is its GEMM-bound time; every other contender is a peer, reported
# as a speedup (peer time / fastrnn time).
SUBJECT, BOUND = "fastrnn", "gemm"


def too_slow(contender, w, max_gflop=REFERENCE_MAX_GFLOP):
    """True when a slow contender (the NumPy reference) should skip workload `w`."""
    return contender.slow and w.gflop > max_gflop
