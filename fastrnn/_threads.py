"""Layers, cells, blocks and losses used from several Python threads at once (SPEC §3).

What a forward keeps for its backward (`_ctx`; a cell's tape) belongs to the calling thread, so each
thread's backward finds its own forward whatever the others do; and every addition into `.grads`
holds the object's `_grads_lock`, so concurrent backwards add up exactly (NumPy's `+=` and the
kernels' in-place adds run without the GIL). The thread-local state is made on first use and not
copied or pickled with the object.
"""
import threading

_make = threading.Lock()


class PerThread:
    """Mixin: `_ctx` and `_thread_state()` per thread, `_grads_lock` per object."""

    def _thread_state(self):
        st = self.__dict__.get("_per_thread")
        if st is None:
            with _make:
                st = self.__dict__.setdefault("_per_thread", threading.local())
        return st

    @property
    def _ctx(self):
        return getattr(self._thread_state(), "ctx", None)

    @_ctx.setter
    def _ctx(self, value):
        self._thread_state().ctx = value

    @property
    def _grads_lock(self):
        lock = self.__dict__.get("_grads_lock_")
        if lock is None:
            with _make:
                lock = self.__dict__.setdefault("_grads_lock_", threading.Lock())
        return lock

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_per_thread", None)
        state.pop("_grads_lock_", None)
        return state
