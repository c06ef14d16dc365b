"""What a forward's cache keeps so that its backward reads exactly what the forward read (SPEC §3).

The kernels' backward reads some of the caller's arrays again (x and the weights, for dx and the
weight gradients). NumPy has no version counter (torch's way of noticing a tensor changed in
place), so the forward takes a 64-bit fingerprint of each such array's bytes and the backward
compares it again; a difference is a RuntimeError naming the array. The forward also works on its
own views of them (`np.ndarray.view`), so a caller who sets `x.shape = ...` on their array changes
nothing the cache holds, and the cache keeps its own sizes.

The fingerprint is the C kernels' `fr_fingerprints` (a Fletcher-style checksum, about 42 GB/s a core
from L2, shared by the threads from 256 KiB), or BLAKE2b where the compiled backend is not built.
"""
import hashlib

from . import _backends


def _blake(arrays):
    return tuple(int.from_bytes(hashlib.blake2b(a.data if a.size else b"", digest_size=8).digest(), "little")
                 for a in arrays)


def _fingerprints():
    """The function giving the 64-bit fingerprints of the bytes of a tuple of C-contiguous arrays."""
    c = _backends._load("c")
    return c.fingerprints if c is not None else _blake


class Snapshot:
    """Fingerprints of named C-contiguous arrays, taken now; `check()` raises if any has changed."""

    __slots__ = ("names", "arrays", "before")

    def __init__(self, named):
        self.names = tuple(name for name, _ in named)
        self.arrays = tuple(a for _, a in named)
        self.before = _fingerprints()(self.arrays)

    def check(self, what):
        now = _fingerprints()(self.arrays)
        for name, a, b in zip(self.names, self.before, now):
            if a != b:
                raise RuntimeError(
                    f"{what}: {name} was modified in place after the forward pass that this backward "
                    f"belongs to; its gradients would be computed from the new values. Run the forward "
                    f"again, or pass a copy of {name} to the forward if you must change it.")
