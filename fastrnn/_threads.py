"""Layers, cells, blocks and losses used from several Python threads at once (SPEC §3).

What a forward keeps for its backward (`_ctx`; a cell's tape) belongs to the calling thread, so each
thread's backward finds its own forward whatever the others do; and every addition into `.grads`
holds the object's `_grads_lock`, so concurrent backwards add up exactly (NumPy's `+=` and the
kernels' in-place adds run without the GIL). The thread-local state is made on first use and not
copied or pickled with the object.
"""
import threading

_make = threading.Lock()


def _once(obj, key, make):
    """obj.__dict__[key], made by make() the first time (by one thread only)."""
    value = obj.__dict__.get(key)
    if value is None:
        with _make:
            value = obj.__dict__.setdefault(key, make())
    return value


class PerThread:
    """Mixin: `_ctx` and `_thread_state()` per thread, `_grads_lock` per object."""

    def _thread_state(self):
        return _once(self, "_per_thread", threading.local)

    @property
    def _ctx(self):
        return getattr(self._thread_state(), "ctx", None)

    @_ctx.setter
    def _ctx(self, value):
        self._thread_state().ctx = value

    @property
    def _grads_lock(self):
        return _once(self, "_grads_lock_", threading.Lock)

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_per_thread", None)
        state.pop("_grads_lock_", None)
        return state
