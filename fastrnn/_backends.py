"""The one registry of kernel backends, used by the API, the tests and the benchmarks alike.

A backend is a module with four functions taking validated, C-contiguous arrays of one float dtype
(`h0`, `b_ih`, `b_hh` always arrays; `lengths` None or int64 (B,)):

    rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity, reverse, lengths, need_cache=True)
        -> out, h_n, cache
    rnn_backward(d_out, d_hn, cache, grads=None) -> dx, dh0, dw_ih, dw_hh, db_ih, db_hh
    gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, reset_after, reverse, lengths, need_cache=True)
        -> out, h_n, cache
    gru_backward(d_out, d_hn, cache, grads=None) -> dx, dh0, dw_ih, dw_hh, db_ih, db_hh

`cache` is whatever the backend needs for its backward, None with need_cache=False (inference:
nothing kept for a backward); `d_hn` is always an array. `grads`, when given, is 4 arrays validated
by fastrnn.functional (a bias entry may be None): the backward adds the weight and bias gradients
into them and returns them (a None entry: a new array).
"""
import importlib
import warnings

from ._config import SimdError, simd_request

# name -> module path, fastest first; `backend=None` picks the first one that imports.
_CANDIDATES = {
    "c": "fastrnn._cbackend",
    "c-blas": "fastrnn._cblas",
    "numpy": "fastrnn.reference",
}
_loaded = {}
_errors = {}
_warned = []
_found = {}           # get's answers by name (None too), once found: the modules loaded never change


def check_simd_request():
    """With FASTRNN_SIMD set, check it now (SimdError for an unknown name, or a level that was not
    built or that this CPU cannot run), by loading the compiled kernels that apply it."""
    if simd_request() is not None:
        _load("c")


def _load(name):
    if name not in _loaded and name not in _errors:
        try:
            _loaded[name] = importlib.import_module(_CANDIDATES[name])
        except SimdError:         # FASTRNN_SIMD asks for what cannot run: say so, never fall back
            raise
        except Exception as exc:  # the compiled extension was not built, or fails to load
            _errors[name] = exc
    return _loaded.get(name)


def backends():
    """Names of the backends available in this installation, fastest first."""
    return [name for name in _CANDIDATES if _load(name) is not None]


def get(name=None):
    """The backend module called `name` (None: the fastest available)."""
    found = _found.get(name) if name is None or type(name) is str else None
    if found is not None:
        return found                # (every functional call asks: the search below costs 0.5-1.4 us)
    if name is None:
        for cand in _CANDIDATES:
            mod = _load(cand)
            if mod is not None:
                if cand == "numpy" and not _warned:
                    _warned.append(True)
                    warnings.warn(f"fastrnn: the compiled kernels are not available ({_errors.get('c')}); using "
                                  "the NumPy reference. Build them with `pip install .` (or `pip install -e .` "
                                  "to work in the source tree).", RuntimeWarning, stacklevel=3)
                _found[None] = cand, mod
                return cand, mod
    if not isinstance(name, str) or name not in _CANDIDATES:
        raise ValueError(f"backend: expected one of {list(_CANDIDATES)} or None, got {name!r}")
    mod = _load(name)
    if mod is None:
        raise ValueError(f"backend: {name!r} is not available in this installation ({_errors[name]})")
    _found[name] = name, mod
    return name, mod
