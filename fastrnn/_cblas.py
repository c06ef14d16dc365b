"""The "c-blas" backend: the C kernels with the big products (input projection, dx, weight gradients)
done by OpenBLAS (scipy.linalg.cython_blas) instead of fastrnn's own packed GEMM. Kept to compare the
two: OpenBLAS runs its own thread pool beside the kernels' OpenMP threads."""
from functools import partial

from . import _cbackend

rnn_forward = partial(_cbackend.rnn_forward, use_blas=True)
gru_forward = partial(_cbackend.gru_forward, use_blas=True)
rnn_backward = _cbackend.rnn_backward   # the cache remembers use_blas
gru_backward = _cbackend.gru_backward
build_info = _cbackend.build_info
