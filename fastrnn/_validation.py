"""Every rule an argument is checked against, stated once (SPEC §3). Used by functional, layers,
cells, blocks, models and fastrnn.torch.

Two kinds of checks:

- **Arrays** — `float_array` (the kernels' operands: float32/float64 only, nothing cast),
  `real_array` (the layers' inputs: any real array, cast to the layer's dtype), `check_shape`,
  `lengths` (a private int64 copy of per-sequence lengths, checked against T and B), `to_numpy`
  (torch tensors in).
- **Hyper-parameters and options** — the table `CONSTRAINTS` (in the style of scikit-learn's
  `_parameter_constraints`): parameter name -> the rule it obeys. `check(name, value)` applies the
  rule and returns the value as it is stored (a Python int / bool / float, a NumPy dtype); a wrong
  type is a TypeError, a value out of range a ValueError, each naming the parameter.

A functional keyword (`reverse=`, `reset_after=`, `nonlinearity=` of `fastrnn.functional`) is an
`option`: a value not among the allowed ones is a ValueError whatever its type, as the functional
API has always said; a constructor's flag (`bias=`, `reset_after=` of a layer) is a TypeError when it
is not a bool.
"""
import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
NONLINEARITIES = ("tanh", "relu")


# ---- arrays -------------------------------------------------------------------------------------

def to_numpy(a):
    """A torch tensor (anything with detach/cpu/numpy) as a NumPy array; anything else untouched."""
    if all(hasattr(a, attr) for attr in ("detach", "cpu", "numpy")):
        return a.detach().cpu().numpy()
    return a


def float_array(name, a, dtype=None):
    """`a` as an ndarray of float32/float64 (TypeError otherwise) matching `dtype` when given."""
    if type(a) is np.ndarray and (a.dtype is FLOAT_DTYPES[0] or a.dtype is FLOAT_DTYPES[1]) and (
            dtype is None or a.dtype is dtype):
        return a                  # the common case, without the checks below (a cell's step notices them)
    if a is None:
        raise TypeError(f"{name}: expected a float32 or float64 array, got None")
    try:
        a = np.asarray(a)
    except Exception as exc:
        raise TypeError(f"{name}: cannot be converted to an array ({exc})") from None
    if a.dtype.kind == "f" and not a.dtype.isnative and a.dtype.newbyteorder("=") in FLOAT_DTYPES:
        a = a.astype(a.dtype.newbyteorder("="))          # big-endian data: same values, native order
    if a.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected a float32 or float64 array, got dtype {a.dtype}")
    if dtype is not None and a.dtype != dtype:
        raise TypeError(f"{name}: dtype {a.dtype} does not match the weights' dtype {dtype}")
    return a


def real_array(name, a, dtype):
    """`a` as an ndarray of `dtype`; real inputs (bool, ints, any float) are cast, anything else
    (complex, object, strings, None) is a TypeError."""
    if type(a) is np.ndarray and a.dtype is dtype:
        return a                  # the common case, without the checks below (a cell's step notices them)
    a = to_numpy(a)
    if a is None:
        raise TypeError(f"{name}: expected an array, got None")
    try:
        arr = np.asarray(a)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name}: cannot be converted to an array ({exc})") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected a real (integer or floating) array, got dtype {arr.dtype}")
    return arr.astype(dtype, copy=False)


def check_shape(name, arr, expected, meaning=""):
    """ValueError naming `name`, the expected shape (and what it means) and the actual one."""
    if arr.shape != tuple(expected):
        meaning = f" {meaning}" if meaning else ""
        raise ValueError(f"{name}: expected shape {tuple(expected)}{meaning}, got {arr.shape}")


def lengths(lengths, T, B):
    """A private int64 copy of `lengths` (None stays None), validated after it is taken: nothing
    another thread does to the caller's array can then change what the kernel reads."""
    if lengths is None:
        return None
    try:
        arr = np.array(to_numpy(lengths))
    except Exception as exc:
        raise ValueError(f"lengths: cannot be converted to an array ({exc})") from None
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"lengths: expected an integer array of shape ({B},), got dtype {arr.dtype}")
    if arr.shape != (B,):
        raise ValueError(f"lengths: expected shape ({B},) (one length per sequence), got {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() > T):
        raise ValueError(f"lengths: every length must lie in [0, T={T}], got min {arr.min()} max {arr.max()}")
    return arr.astype(np.int64)


# ---- hyper-parameters and options ---------------------------------------------------------------

def option(name, value, allowed):
    """`value` if it is one of `allowed` (NumPy bools and strings count as Python ones), else a
    ValueError listing them."""
    if isinstance(value, (np.bool_, np.str_)):
        value = value.item()
    for a in allowed:
        if type(value) is type(a) and value == a:
            return value
    names = ", ".join(map(repr, allowed[:-1]))
    raise ValueError(f"{name}: expected {names} or {allowed[-1]!r}, got {value!r}")


class Choice:
    """One of the given values: the rule `option` states, as a parameter rule."""

    def __init__(self, *allowed):
        self.allowed = allowed

    def __call__(self, name, value):
        return option(name, value, self.allowed)


def positive_int(name, value):
    """A positive int (bools refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected a positive int, got {value!r} ({type(value).__name__})")
    if value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")
    return int(value)


def flag(name, value):
    """True or False (NumPy bools too)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {value!r} ({type(value).__name__})")
    return bool(value)


def probability(name, value):
    """A real number in [0, 1) (NaN refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a number in [0, 1), got {value!r}")
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{name}: expected a probability in [0, 1), got {value!r}")
    return float(value)


def float_dtype(name, value):
    """numpy.float32 or numpy.float64 (as a NumPy dtype); TypeError for anything else."""
    try:
        dt = np.dtype(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected numpy.float32 or numpy.float64, got {value!r}") from None
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected numpy.float32 or numpy.float64, got {dt}")
    return dt


CONSTRAINTS = {
    # sizes
    "input_size": positive_int, "hidden_size": positive_int, "num_layers": positive_int,
    "in_features": positive_int, "out_features": positive_int,
    "num_embeddings": positive_int, "embedding_dim": positive_int,
    # constructor flags
    "bias": flag, "batch_first": flag, "bidirectional": flag, "reset_after": flag, "mode": flag,
    # the rest
    "dropout": probability,
    "dtype": float_dtype,
    "nonlinearity": Choice(*NONLINEARITIES),
}


def check(name, value):
    """`value` checked against the rule CONSTRAINTS states for the parameter `name`."""
    return CONSTRAINTS[name](name, value)


# ---- estimators' hyper-parameters (fastrnn.models) ----------------------------------------------
# As scikit-learn's: each estimator class states `_parameter_constraints`, hyper-parameter -> rule,
# and fit checks them all (validate_params). An estimator's constructor only stores its arguments,
# so a bad one is found at fit (or when a saved model is loaded) and is a ValueError naming it, as
# scikit-learn's InvalidParameterError; the CONSTRAINTS rules above (such as dtype's TypeError) can
# stand in such a table too.

class Int:
    """An int >= lo (bools refused)."""

    def __init__(self, lo):
        self.lo = lo

    def __call__(self, name, value):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < self.lo:
            raise ValueError(f"{name}: expected an int >= {self.lo}, got {value!r}")
        return value


class Real:
    """A real number in [lo, hi] ((lo, hi] with lo_open; None too with none_ok)."""

    def __init__(self, lo, hi=float("inf"), lo_open=False, none_ok=False):
        self.lo, self.hi, self.lo_open, self.none_ok = lo, hi, lo_open, none_ok

    def __call__(self, name, value):
        if value is None and self.none_ok:
            return value
        lo, hi = self.lo, self.hi
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or \
                not (lo < value if self.lo_open else lo <= value) or not value <= hi:
            raise ValueError(f"{name}: expected a number in {'(' if self.lo_open else '['}{lo}, {hi}], got {value!r}")
        return value


def boolean(name, value):
    """True or False (NumPy bools too); a ValueError otherwise (an estimator's rule)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name}: expected True or False, got {value!r}")
    return value


def validate_params(constraints, obj):
    """Check every attribute of `obj` named in `constraints` (in the table's order) by its rule."""
    for name, rule in constraints.items():
        rule(name, getattr(obj, name))
