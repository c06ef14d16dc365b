"""Estimators for the five types of RNN, following scikit-learn's conventions.

    one-to-one, many-to-one   SequenceClassifier, SequenceRegressor   (the final state -> a Dense head)
    many-to-many, Tx = Ty     SequenceTagger                          (a label per step)
    one-to-many               CharLanguageModel                       (fit(text), generate(n_chars))
    many-to-many, Tx != Ty    Seq2Seq                                 (encoder-decoder, attention)

The constructor takes only hyper-parameters; `fit` learns, then `predict`, `predict_proba`,
`score`; `get_params` / `set_params` make `sklearn.base.clone`, `cross_val_score` and grid searches
work (scikit-learn itself is optional). Every estimator has `cell="gru"` or `"rnn"`, `hidden_size`,
`num_layers`, `random_state`, `verbose` (a progress bar with the loss and the throughput on stderr),
`dtype` and `backend` (passed to the recurrent layers), and saves to / loads from a NumPy .npz file
(`save(path)`, `Estimator.load(path)`; no pickled code).

Inputs (X, or Seq2Seq's sources) may be
- a 3-D array (N, T, I): N sequences of T steps of I features;
- a 2-D float array (N, I): one step each (one-to-one, a plain feed-forward problem);
- a 2-D integer array (N, T): token ids, embedded (`embedding_dim`);
- a list of N variable-length sequences: (T_i, I) float arrays, 1-D float arrays (T_i,) (one
  feature), 1-D integer arrays or lists (token ids), or strings / lists of strings (tokens with a
  vocabulary learnt by fit; unknown ones at predict time share one id).
Lengths are taken from the sequences; batches are padded and the layers skip the padding.
Float features are standardised (per feature, over the valid steps) unless `standardize=False`.

One training loop serves every estimator (`_RNNEstimator._train`): mini-batches in random order,
Adam or SGD with momentum, gradient clipping by global norm (`clip_norm`) and by value
(`clip_value`), stopping when the loss stops improving by `tol` for `n_iter_no_change` epochs (on
a held-out `validation_fraction` with `early_stopping=True`, keeping the best weights; else on the
training loss), `partial_fit` for one more epoch on new data, `loss_curve_` per epoch.
"""
import contextlib
import functools
import inspect
import json
import math
import numbers
import sys
import time
import zipfile
import zlib
from collections import OrderedDict

import numpy as np

from . import losses as _losses
from . import optim as _optim
from ._config import get_num_threads, no_grad
from ._progress import Progress
from .blocks import Dense, DotAttention, Embedding, check_ids
from .layers import GRU, RNN, _to_numpy

__all__ = ["BaseEstimator", "SequenceClassifier", "SequenceRegressor", "SequenceTagger",
           "CharLanguageModel", "Seq2Seq", "NotFittedError", "load"]

_FORMAT_VERSION = 1


class NotFittedError(ValueError, AttributeError):
    """Predicting, scoring or saving before fit (as sklearn.exceptions.NotFittedError)."""


def _blas_threads_guard():
    """A context in which the BLAS runs one thread, when fastrnn's kernels run several.

    The estimators interleave NumPy matrix products (the Dense heads, attention) with fastrnn's
    OpenMP time loops; OpenBLAS's threads keep spinning after each product and take the cores that
    the next time loop waits for (measured on 2 cores: a character model's epoch 3-4x slower than
    with a single-threaded BLAS). threadpoolctl (optional) scopes the limit to the call; without it
    nothing changes."""
    if get_num_threads() <= 1:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _guarded(method):
    """Run an estimator method under _blas_threads_guard (outermost call only)."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if getattr(self, "_in_guard", False):
            return method(self, *args, **kwargs)
        self._in_guard = True
        try:
            with _blas_threads_guard():
                return method(self, *args, **kwargs)
        finally:
            self._in_guard = False
    return wrapper


# =================================================================================================
# scikit-learn's estimator protocol, without scikit-learn
# =================================================================================================

class BaseEstimator:
    """get_params / set_params / repr by introspection of the constructor's signature, as
    sklearn.base.BaseEstimator does; the constructor only stores its arguments."""

    _estimator_type = None

    @classmethod
    def _get_param_names(cls):
        sig = inspect.signature(cls.__init__)
        names = []
        for p in sig.parameters.values():
            if p.name == "self":
                continue
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise RuntimeError(f"{cls.__name__}: estimators must list their parameters explicitly")
            names.append(p.name)
        return sorted(names)

    def _store_params(self, args):
        """Constructor helper: keep every argument, untouched (validation happens in fit)."""
        for name in self._get_param_names():
            setattr(self, name, args[name])

    def get_params(self, deep=True):
        """The constructor's parameters as a dict (nested estimators as name__param when deep)."""
        out = {}
        for name in self._get_param_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{name}__{k}", v) for k, v in value.get_params().items())
            out[name] = value
        return out

    def set_params(self, **params):
        """Set parameters by name; returns self. ValueError for an unknown name."""
        valid = self._get_param_names()
        for key, value in params.items():
            name, _, sub = key.partition("__")
            if name not in valid:
                raise ValueError(f"Invalid parameter {name!r} for estimator {type(self).__name__}. "
                                 f"Valid parameters are: {valid}.")
            if sub:
                getattr(self, name).set_params(**{sub: value})
            else:
                setattr(self, name, value)
        return self

    def __repr__(self):
        sig = inspect.signature(type(self).__init__)
        parts = []
        for name in self._get_param_names():
            default = sig.parameters[name].default
            value = getattr(self, name, default)
            try:
                same = value is default or bool(value == default)
            except Exception:
                same = False
            if not same:
                parts.append(f"{name}={_short_repr(value)}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def __sklearn_tags__(self):
        from sklearn.utils import ClassifierTags, InputTags, RegressorTags, Tags, TargetTags

        est_type = self._estimator_type
        tags = Tags(estimator_type=est_type, target_tags=TargetTags(required=est_type is not None),
                    classifier_tags=ClassifierTags() if est_type == "classifier" else None,
                    regressor_tags=RegressorTags() if est_type == "regressor" else None)
        tags.input_tags = InputTags(two_d_array=True, three_d_array=True, string=True)
        return tags


def _short_repr(value):
    if isinstance(value, type):
        return value.__name__ if value.__module__ == "builtins" else f"{value.__module__.split('.')[0]}.{value.__name__}"
    return repr(value)


# =================================================================================================
# Inputs: parsing, vocabularies, standardisation, padding
# =================================================================================================

def _show(v):
    """A label or token as the user wrote it (no 'np.int64(...)' around it) for error messages."""
    return repr(v.item() if isinstance(v, np.generic) else v)


def _is_int_kind(a):
    return a.dtype.kind in "iu"


def _parse_sequences(X, name="X"):
    """(kind, sequences, is_array) with kind "features" (list/array of (T_i, I) float), "ids"
    (int), "tokens" (arrays of str). An input array stays one array (N, T, ...)."""
    X = _to_numpy(X)
    if X is None:
        raise ValueError(f"{name}: expected sequences, got None")
    if isinstance(X, (str, bytes)):
        raise TypeError(f"{name}: expected a collection of sequences, got a single {type(X).__name__}; "
                        f"pass [{name.lower()}] for one sequence")
    if isinstance(X, np.ndarray) and X.dtype != object:
        if X.shape[0:1] == (0,) or X.ndim == 0:
            raise ValueError(f"{name}: empty data: expected at least one sequence, got an array of shape {X.shape}")
        if X.ndim == 3:
            if X.dtype.kind not in "biuf":
                raise TypeError(f"{name}: expected a numeric (N, T, I) array, got dtype {X.dtype}")
            return "features", X, True
        if X.ndim == 2:
            if _is_int_kind(X):
                return "ids", X, True
            if X.dtype.kind in "bf":
                return "features", X[:, None, :], True
            if X.dtype.kind in "US":
                return "tokens", X.astype(str), True
            raise TypeError(f"{name}: unsupported dtype {X.dtype}")
        raise ValueError(f"{name}: expected a 3-D array (N, T, I), a 2-D array (N, I) or (N, T) of token ids, "
                         f"or a list of sequences; got an array of shape {X.shape}. For N univariate "
                         f"sequences use shape (N, T, 1)")
    try:
        items = list(X)
    except TypeError:
        raise TypeError(f"{name}: expected an array or a list of sequences, got {type(X).__name__}") from None
    if not items:
        raise ValueError(f"{name}: empty data: expected at least one sequence, got none")
    seqs, kinds = [], set()
    for i, item in enumerate(items):
        item = _to_numpy(item)
        if isinstance(item, str):
            seqs.append(np.array(list(item), dtype=str).reshape(len(item)))
            kinds.add("tokens")
            continue
        try:
            a = np.asarray(item)
        except ValueError as exc:
            raise ValueError(f"{name}[{i}]: ragged: every step of a sequence must have the same number of "
                             f"features ({exc})") from None
        if a.dtype == object:
            raise ValueError(f"{name}[{i}]: ragged or mixed: expected a (T_i, I) numeric array, a 1-D sequence "
                             f"of token ids or a string; every step must have the same number of features")
        if a.ndim == 0:
            raise ValueError(f"{name}[{i}]: expected a sequence, got the scalar {item!r}; for one-step inputs "
                             f"pass a 2-D array (N, I)")
        if a.ndim == 1:
            if _is_int_kind(a):
                kinds.add("ids")
            elif a.dtype.kind in "bf":
                a = a[:, None]
                kinds.add("features")
            elif a.dtype.kind in "US":
                a = a.astype(str)
                kinds.add("tokens")
            elif a.size == 0:
                kinds.add("empty")
            else:
                raise TypeError(f"{name}[{i}]: unsupported dtype {a.dtype}")
        elif a.ndim == 2 and a.dtype.kind in "biuf":
            kinds.add("features")
        else:
            raise ValueError(f"{name}[{i}]: expected a (T_i, I) array, a 1-D sequence or a string, got shape {a.shape}")
        seqs.append(a)
    kinds.discard("empty")
    if len(kinds) > 1:
        raise ValueError(f"{name}: mixed sequence kinds {sorted(kinds)}; use one kind for all sequences")
    kind = kinds.pop() if kinds else "ids"
    if kind == "features":
        seqs = [s.reshape(0, 1) if s.ndim == 1 else s for s in seqs]   # empty 1-D -> (0, 1)
        widths = {s.shape[1] for s in seqs if s.shape[0]} or {seqs[0].shape[1]}
        if len(widths) > 1:
            bad = next(i for i, s in enumerate(seqs) if s.shape[0] and s.shape[1] != seqs[0].shape[1])
            raise ValueError(f"{name}[{bad}]: has {seqs[bad].shape[1]} features per step, but {name}[0] has "
                             f"{seqs[0].shape[1]}; every sequence needs the same number of features")
        w = widths.pop()
        seqs = [s if s.shape[0] else np.zeros((0, w)) for s in seqs]
    elif kind == "ids":
        seqs = [s.astype(np.int64) if s.size else np.zeros(0, np.int64) for s in seqs]
    return kind, seqs, False


def _pad(seqs, dtype, fill=0):
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    T = int(lengths.max()) if len(lengths) else 0
    out = np.full((len(seqs), T) + seqs[0].shape[1:], fill, dtype=dtype)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
    return out, lengths


class _Vocabulary:
    """Sorted distinct tokens (str or int); ids start at `offset` (ids below are reserved)."""

    def __init__(self, tokens, offset=1):
        self.tokens = np.asarray(tokens)
        self.offset = offset

    @classmethod
    def fit(cls, seqs, offset=1):
        allv = np.concatenate([np.asarray(s).ravel() for s in seqs]) if seqs else np.zeros(0)
        return cls(np.unique(allv), offset)

    def __len__(self):
        return len(self.tokens) + self.offset

    def encode(self, seq, unknown=None, name="X"):
        seq = np.asarray(seq)
        if seq.size == 0:
            return np.zeros(0, np.int64)
        try:
            pos = np.searchsorted(self.tokens, seq)
        except TypeError:
            raise TypeError(f"{name}: tokens of type {seq.dtype} do not match the vocabulary's "
                            f"{self.tokens.dtype}") from None
        pos = np.minimum(pos, len(self.tokens) - 1)
        ok = self.tokens[pos] == seq
        ids = pos.astype(np.int64) + self.offset
        if not ok.all():
            if unknown is None:
                bad = seq[~ok][0]
                raise ValueError(f"{name}: unknown token {_show(bad)} (not seen during fit)")
            ids[~ok] = unknown
        return ids

    def decode(self, ids):
        return self.tokens[np.asarray(ids, dtype=np.int64) - self.offset]


class _InputSpec:
    """What fit learns about the inputs: their kind, sizes, vocabulary and feature scaling."""

    def __init__(self, kind=None):
        self.kind = kind
        self.n_features = 0     # features per step ("features")
        self.n_tokens = 0       # embedding rows ("ids", "tokens")
        self.vocab = None       # _Vocabulary ("tokens"; id 0 = unknown)
        self.mean = None
        self.scale = None

    def fit(self, X, standardize, name="X"):
        kind, seqs, _ = _parse_sequences(X, name)
        self.kind = kind
        if kind == "features":
            self.n_features = int(seqs.shape[2] if isinstance(seqs, np.ndarray) else seqs[0].shape[1])
            if standardize:
                if isinstance(seqs, np.ndarray):
                    flat = seqs.reshape(-1, self.n_features).astype(np.float64)
                else:
                    flat = np.concatenate([s for s in seqs]).astype(np.float64)
                if flat.size:
                    self.mean = flat.mean(axis=0)
                    std = flat.std(axis=0)
                    self.scale = np.where(std > 1e-8 * np.maximum(1.0, np.abs(self.mean)), std, 1.0)
        elif kind == "ids":
            top = int(max((s.max() for s in seqs if s.size), default=-1)) if not isinstance(seqs, np.ndarray) \
                else int(seqs.max())
            low = int(min((s.min() for s in seqs if s.size), default=0)) if not isinstance(seqs, np.ndarray) \
                else int(seqs.min())
            if low < 0:
                raise ValueError(f"{name}: token ids must be >= 0, got {low}")
            self.n_tokens = top + 1
        else:
            self.vocab = _Vocabulary.fit(list(seqs), offset=1)
            self.n_tokens = len(self.vocab)
        if self.n_tokens == 0 and kind != "features":
            self.n_tokens = 1
        return self

    @property
    def input_size(self):
        return self.n_features if self.kind == "features" else None

    def transform(self, X, dtype, name="X"):
        """(padded batch-first array, lengths, is_array)"""
        kind, seqs, is_array = _parse_sequences(X, name)
        if kind != self.kind and not (kind == "ids" and all(len(s) == 0 for s in seqs)):
            raise ValueError(f"{name}: got {kind} sequences, but the estimator was fitted on {self.kind}")
        if self.kind == "features":
            width = seqs.shape[2] if is_array else seqs[0].shape[1]
            if width != self.n_features:
                raise ValueError(f"{name}: expected {self.n_features} features per step (as in fit), got {width}")
            if is_array:
                padded = np.array(seqs, dtype=np.float64)
                lengths = np.full(len(padded), padded.shape[1], np.int64)
            else:
                padded, lengths = _pad(seqs, np.float64)
            if self.mean is not None:
                valid = np.arange(padded.shape[1])[None, :] < lengths[:, None]
                padded = np.where(valid[..., None], (padded - self.mean) / self.scale, 0.0)
            if not np.all(np.isfinite(padded)):
                raise ValueError(f"{name}: contains NaN or infinity")
            return padded.astype(dtype), lengths, is_array
        if self.kind == "ids":
            if is_array:
                padded = check_ids(name, seqs, self.n_tokens)
                lengths = np.full(len(padded), padded.shape[1], np.int64)
            else:
                seqs = [check_ids(f"{name}[{i}]", s, self.n_tokens) for i, s in enumerate(seqs)]
                padded, lengths = _pad(seqs, np.int64)
            return padded, lengths, is_array
        if is_array:
            seqs = list(seqs)
        ids = [self.vocab.encode(s, unknown=0, name=name) for s in seqs]
        padded, lengths = _pad(ids, np.int64)
        return padded, lengths, is_array

    def state(self):
        st = {"kind": np.array(self.kind), "n_features": np.array(self.n_features),
              "n_tokens": np.array(self.n_tokens)}
        if self.vocab is not None:
            st["vocab"] = self.vocab.tokens
        if self.mean is not None:
            st["mean"], st["scale"] = self.mean, self.scale
        return st

    @classmethod
    def from_state(cls, st, name):
        """The spec that `state()` saved as the entries `name.*` of `st` (consumed), checked as fit
        makes them (ValueError naming the entry)."""
        kind = str(_entry(st, f"{name}.kind", "U"))
        if kind not in ("features", "ids", "tokens"):
            raise ValueError(f"state/{name}.kind: expected 'features', 'ids' or 'tokens', got {kind!r:.40}")
        spec, feats = cls(kind), kind == "features"
        spec.n_features = _check_int(st, f"{name}.n_features", int(feats), None if feats else 0)
        spec.n_tokens = _check_int(st, f"{name}.n_tokens", int(not feats), 0 if feats else None)
        if kind == "tokens":       # id 0: unknown tokens
            spec.vocab = _Vocabulary(_check_labels(st, f"{name}.vocab", 0, spec.n_tokens - 1, kinds="U"), 1)
        if feats and f"{name}.mean" in st:
            spec.mean = _check_floats(st, f"{name}.mean", spec.n_features)
            spec.scale = _check_floats(st, f"{name}.scale", spec.n_features, positive=True)
        return spec


def _time_major(a):
    """(B, T, ...) -> contiguous (T, B, ...)."""
    return np.ascontiguousarray(np.swapaxes(a, 0, 1))


class _Data:
    """Padded, batch-first training data: inputs, lengths and encoded targets, indexed by sample."""

    def __init__(self, X, lengths, **targets):
        self.X, self.lengths, self.targets = X, lengths, targets
        self.n = len(lengths)

    def take(self, idx):
        sub = {k: v[idx] for k, v in self.targets.items()}
        return _Data(self.X[idx], self.lengths[idx], **sub)

    def inputs(self, idx):
        """Time-major inputs of a batch, cut to its longest sequence, and its lengths."""
        lengths = self.lengths[idx]
        T = int(lengths.max()) if len(lengths) else 0
        return _time_major(self.X[idx, :T]), lengths


def _check_same_length(name_x, n_x, name_y, y):
    """ValueError unless `y` holds one target per sequence of `name_x`."""
    if not isinstance(y, (list, tuple)):
        y = _to_numpy(y)
        if y is None or isinstance(y, (str, bytes)) or not hasattr(y, "__len__") or np.ndim(y) == 0:
            raise ValueError(f"{name_y}: expected {n_x} targets (one per sequence of {name_x}), got {y!r:.60}")
    if len(y) != n_x:
        raise ValueError(f"{name_y}: expected {n_x} targets (one per sequence of {name_x}), got {len(y)}")


# =================================================================================================
# Reading a saved model: each entry checked as save writes it and fit makes it. A ValueError names
# the entry (load puts the file's path in front).
# =================================================================================================

_META_KEYS = ("format", "class", "params", "loss_curve")
_KIND_WORDS = {"iu": "an int", "f": "a float", "b": "a bool", "U": "a str"}
_LABEL_KINDS = "biufSU"         # what np.unique sorts: numbers and strings


def _read_meta(entry):
    """The __meta__ entry (a JSON string) as the dict save writes."""
    if entry is None:
        raise ValueError("not a fastrnn model file (no __meta__ entry)")
    if entry.ndim != 0 or entry.dtype.kind != "U":
        raise ValueError(f"__meta__: expected a JSON string, got an array of dtype {entry.dtype}, shape {entry.shape}")
    try:
        meta = json.loads(str(entry))
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"__meta__ is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"__meta__: expected a JSON object, got {type(meta).__name__}")
    missing, extra = [k for k in _META_KEYS if k not in meta], sorted(set(meta) - set(_META_KEYS))
    if missing or extra:
        raise ValueError(f"{', '.join(missing)} missing" if missing else f"__meta__: unexpected keys {extra}")
    if isinstance(meta["format"], bool) or meta["format"] != _FORMAT_VERSION:
        raise ValueError(f"unsupported model format {meta['format']!r:.40}")
    if not isinstance(meta["params"], dict):
        raise ValueError(f"params: expected a JSON object, got {type(meta['params']).__name__}")
    curve = meta["loss_curve"]
    if not isinstance(curve, list) or not all(type(x) is float and math.isfinite(x) for x in curve):
        raise ValueError(f"loss_curve: expected a list of finite numbers, got {curve!r:.60}")
    return meta


def _entry(st, key, kinds, ndim=0, size=None):
    """Take the array state/`key` out of `st`: a dtype of a kind in `kinds`, `ndim` dimensions,
    `size` values (None: any number)."""
    if key not in st:
        raise ValueError(f"state/{key}: missing")
    a = st.pop(key)
    if a.dtype.kind not in kinds:
        raise ValueError(f"state/{key}: expected {_KIND_WORDS.get(kinds, 'numbers or strings')}, got dtype {a.dtype}")
    if a.ndim != ndim:
        raise ValueError(f"state/{key}: expected a {ndim}-D array, got shape {a.shape}")
    if size is not None and len(a) != size:
        raise ValueError(f"state/{key}: expected {size} values, got {len(a)}")
    return a


def _check_int(st, key, lo=1, hi=None):
    """A count: an int in [lo, hi]."""
    v = int(_entry(st, key, "iu"))
    if v < lo or (hi is not None and v > hi):
        want = "a positive int" if (lo, hi) == (1, None) else f"an int >= {lo}" if hi is None else \
            f"an int in [{lo}, {hi}]"
        raise ValueError(f"state/{key}: expected {want}, got {v}")
    return v


def _check_flag(st, key, true_ok=True, why=""):
    v = bool(_entry(st, key, "b"))
    if v and not true_ok:
        raise ValueError(f"state/{key}: is True, but {why}")
    return v


def _sorted_distinct(a):
    """Whether the 1-D `a` is as np.unique makes it: strictly increasing, no NaN."""
    return not (a.dtype.kind == "f" and np.isnan(a).any()) and not np.any(a[1:] <= a[:-1])


def _check_labels(st, key, lo=1, size=None, kinds=_LABEL_KINDS):
    """Classes or tokens: at least `lo` sorted distinct values (`size` of them)."""
    a = _entry(st, key, kinds, 1, size)
    if len(a) < lo or not _sorted_distinct(a):
        raise ValueError(f"state/{key}: expected at least {lo} sorted distinct values without NaN, got {a!r:.80}")
    return a


def _check_chars(st, key):
    """An alphabet: a non-empty str of sorted distinct characters."""
    s = str(_entry(st, key, "U"))
    if not s or not _sorted_distinct(np.array(list(s))):
        raise ValueError(f"state/{key}: expected a str of sorted distinct characters, got {s!r:.60}")
    return s


def _check_floats(st, key, size, positive=False, total=None):
    """`size` finite floats (> 0 when positive; summing to `total`, frequencies)."""
    a = _entry(st, key, "f", 1, size)
    if not np.all(np.isfinite(a)) or (positive and not np.all(a > 0)) or \
            (total is not None and not np.isclose(a.sum(), total)):
        want = f"{size} finite{' positive' if positive else ''} numbers" + (f" summing to {total:g}" if total else "")
        raise ValueError(f"state/{key}: expected {want}, got {a!r:.80}")
    return a


# Each fitted attribute (in `_fitted_attrs` order, an attribute may use those before it):
# est, state, name -> its value
_FITTED_CHECKS = {
    "input_spec_": lambda est, st, k: _InputSpec.from_state(st, k),
    "n_outputs_": lambda est, st, k: _check_int(st, k),
    "classes_": lambda est, st, k: _check_labels(st, k, 2, getattr(est, "n_outputs_", None)),
    "y_mean_": lambda est, st, k: _check_floats(st, k, est.n_outputs_),
    "y_scale_": lambda est, st, k: _check_floats(st, k, est.n_outputs_, positive=True),
    "y_ndim_": lambda est, st, k: _check_int(st, k, 1 if est.n_outputs_ == 1 else 2, 2),
    "chars_": lambda est, st, k: _check_chars(st, k),
    "char_freq_": lambda est, st, k: _check_floats(st, k, len(est.chars_), positive=True, total=1.0),
    "target_tokens_": lambda est, st, k: _check_labels(st, k),
    "target_is_str_": lambda est, st, k: _check_flag(st, k, est.target_tokens_.dtype.kind == "U",
                                                     "the target tokens are not strings"),
    "max_target_length_": lambda est, st, k: _check_int(st, k),
}


# =================================================================================================
# The shared estimator: hyper-parameters, blocks, the training loop, save / load
# =================================================================================================

_COMMON_DOC = """
    Common parameters: cell ("gru" or "rnn"), hidden_size, num_layers, nonlinearity (of cell="rnn":
    "tanh" or "relu"), dropout (between stacked layers), embedding_dim (token inputs),
    standardize (float features), optimizer ("adam" or "sgd"), learning_rate, momentum (sgd),
    weight_decay (L2 on the input and output weight matrices; never on the recurrent weights or
    the biases, whose decay erases long-term memory), batch_size, max_epochs (stops earlier when
    the loss stops improving), clip_norm (global-norm clipping, None: off),
    clip_value (element clipping, None: off), early_stopping, validation_fraction,
    n_iter_no_change, tol, warm_start, random_state, verbose (0: silent, 1: a progress bar per
    epoch on stderr), dtype (numpy.float32 or numpy.float64), backend (None: the fastest built,
    "c" or "numpy").
"""


class _RNNEstimator(BaseEstimator):
    """The training loop and the machinery every estimator shares. A subclass provides
    `_make_data(X, y, fit)` (its inputs and targets, encoded; learns vocabularies and scalings when
    fit), `_build()` (its blocks, from fitted attributes only, so that load can rebuild them),
    `_batch_loss(data, batch, backward)` (forward, loss and, when asked, backward of one batch)
    and, when its batches are not mini-batches of samples, `_batches` / `_epoch_total` / `_split`."""

    _loss_per = "sequence"      # loss_curve_ per sequence, or "step": per time step (per token)
    _unit = "seq"
    _loss_class = None          # a fastrnn.losses class; each estimator gets its own instance
    _fitted_attrs = ()          # names saved with the model (arrays, strings or numbers)

    @property
    def _loss_fn(self):
        fn = self.__dict__.get("_loss_obj")
        if fn is None:
            fn = self._loss_obj = self._loss_class()
        return fn

    # ---- hyper-parameters ---------------------------------------------------------------------

    def _validate(self):
        """Check the hyper-parameters; returns nothing, raises ValueError / TypeError naming one."""
        def integer(name, lo):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < lo:
                raise ValueError(f"{name}: expected an int >= {lo}, got {v!r}")

        def number(name, lo, hi=math.inf, lo_open=False, none_ok=False):
            v = getattr(self, name)
            if v is None and none_ok:
                return
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not (lo < v if lo_open else lo <= v) \
                    or not v <= hi:
                raise ValueError(f"{name}: expected a number in {'(' if lo_open else '['}{lo}, {hi}], got {v!r}")

        if self.cell not in ("gru", "rnn"):
            raise ValueError(f"cell: expected 'gru' or 'rnn', got {self.cell!r}")
        if self.nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {self.nonlinearity!r}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer: expected 'adam' or 'sgd', got {self.optimizer!r}")
        for name in ("hidden_size", "num_layers", "embedding_dim", "batch_size", "n_iter_no_change"):
            integer(name, 1)
        integer("max_epochs", 0)
        integer("verbose", 0)
        number("learning_rate", 0, lo_open=True)
        number("momentum", 0, 1)
        number("weight_decay", 0)
        number("dropout", 0, 0.999)
        number("tol", 0)
        number("validation_fraction", 0, 0.9)
        number("clip_norm", 0, lo_open=True, none_ok=True)
        number("clip_value", 0, lo_open=True, none_ok=True)
        try:      # (not `dt = None` on error: np.dtype(...) == None is True for float64)
            ok = np.dtype(self.dtype) in (np.dtype(np.float32), np.dtype(np.float64))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise TypeError(f"dtype: expected numpy.float32 or numpy.float64, got {self.dtype!r}")
        if not isinstance(getattr(self, "bidirectional", False), (bool, np.bool_)):
            raise ValueError(f"bidirectional: expected True or False, got {self.bidirectional!r}")
        if self.backend is not None:
            from . import _backends
            _backends.get(self.backend)

    @property
    def _dtype(self):
        return np.dtype(self.dtype)

    def _seed(self):
        """A fresh seed for one block, drawn from the estimator's generator."""
        return int(self._rng_.integers(0, 2 ** 31 - 1))

    def _init_rng(self):
        rs = self.random_state
        if isinstance(rs, np.random.Generator):
            self._rng_ = rs
        elif isinstance(rs, np.random.RandomState):
            self._rng_ = np.random.default_rng(rs.randint(0, 2 ** 31 - 1))
        else:
            self._rng_ = np.random.default_rng(rs)

    # ---- blocks ---------------------------------------------------------------------------------

    def _recurrent(self, input_size, hidden_size, bidirectional=False):
        kwargs = dict(num_layers=self.num_layers, bidirectional=bool(bidirectional),
                      dropout=float(self.dropout) if self.num_layers > 1 else 0.0,
                      dtype=self._dtype, seed=self._seed(), backend=self.backend)
        if self.cell == "rnn":
            return RNN(input_size, hidden_size, nonlinearity=self.nonlinearity, **kwargs)
        return GRU(input_size, hidden_size, **kwargs)

    def _input_blocks(self, spec):
        """An Embedding for token inputs (None for features), and the recurrent layer's input size."""
        emb = None
        if spec.kind != "features":
            emb = Embedding(spec.n_tokens, self.embedding_dim, dtype=self._dtype, seed=self._seed())
        size = spec.n_features if emb is None else self.embedding_dim
        return emb, size

    def _zero_grad(self):
        for block in self._blocks_.values():
            block.zero_grad()

    def _set_training(self, mode):
        for block in self._blocks_.values():
            block.train(mode)

    def _snapshot(self):
        return [p.copy() for block in self._blocks_.values() for p in block.parameters().values()]

    def _restore(self, snap):
        params = [p for block in self._blocks_.values() for p in block.parameters().values()]
        for p, s in zip(params, snap):
            p[...] = s

    def _make_optimizer(self):
        blocks = list(self._blocks_.values())
        if self.optimizer == "adam":
            return _optim.Adam(blocks, lr=self.learning_rate)
        return _optim.SGD(blocks, lr=self.learning_rate, momentum=self.momentum)

    def _decayed(self):
        """(param, grad) pairs that weight_decay applies to: the input-side and output-side weight
        matrices (embeddings, w_ih, Dense weights), not the recurrent w_hh nor the biases, whose
        shrinking would erase what a gated cell keeps across many steps."""
        pairs = []
        for block in self._blocks_.values():
            for name, p in block.parameters().items():
                if name.startswith("weight") and not name.startswith("weight_hh"):
                    pairs.append((p, block.grads[name]))
        return pairs

    def _check_fitted(self):
        if getattr(self, "_blocks_", None) is None:
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet; call fit first")

    @property
    def n_parameters_(self):
        """Number of trained parameters."""
        self._check_fitted()
        return int(sum(p.size for b in self._blocks_.values() for p in b.parameters().values()))

    # ---- the one training loop -------------------------------------------------------------------

    def _batches(self, data, rng, shuffle, batch_size=None):
        """Mini-batches of sample indices (random order when shuffle)."""
        bs = batch_size or self.batch_size
        order = rng.permutation(data.n) if shuffle else np.arange(data.n)
        for i in range(0, data.n, bs):
            yield order[i:i + bs]

    def _epoch_total(self, data):
        return data.n

    @no_grad()   # inference: the recurrent layers keep nothing for a backward
    def _eval_loss(self, data):
        """Mean loss on `data` (per sequence or per step, as loss_curve_), no training."""
        self._set_training(False)
        try:
            s_lb = s_b = s_steps = 0.0
            for batch in self._batches(data, self._rng_, False, batch_size=self._predict_batch_size(data)):
                loss, b, steps = self._batch_loss(data, batch, backward=False)
                s_lb += loss * b
                s_b += b
                s_steps += steps
        finally:
            self._set_training(True)
        return s_lb / max(s_steps if self._loss_per == "step" else s_b, 1)

    def _predict_batch_size(self, data=None):
        T = int(data.lengths.max()) if data is not None and hasattr(data, "lengths") and data.n else 100
        return int(max(self.batch_size, min(512, 2 ** 16 // max(T, 1))))

    def _train(self, data, epochs, valid=None, stop_early=True):
        """Run `epochs` epochs of mini-batch training on `data` (validation on `valid`)."""
        if not hasattr(self, "_optimizer_") or self._optimizer_ is None:
            self._optimizer_ = self._make_optimizer()
        opt = self._optimizer_
        params = [b for b in self._blocks_.values()]
        decayed = self._decayed()
        self._set_training(True)
        best, best_snap, bad_epochs = math.inf, None, 0
        show = bool(self.verbose)
        for epoch in range(epochs):
            t0 = time.perf_counter()
            desc = f"{type(self).__name__} epoch {epoch + 1}/{epochs}" if epochs > 1 else \
                f"{type(self).__name__} epoch {len(self.loss_curve_) + 1}"
            bar = Progress(self._epoch_total(data), desc=desc, unit=self._unit, enabled=show)
            s_lb = s_b = s_steps = 0.0
            skipped = 0
            for batch in self._batches(data, self._rng_, True):
                self._zero_grad()
                loss, b, steps = self._batch_loss(data, batch, backward=True)
                if not math.isfinite(loss):
                    skipped += 1
                    continue
                if self.weight_decay:
                    for p, g in decayed:             # the L2 term weight_decay * |W|^2 / 2
                        g += p.dtype.type(self.weight_decay) * p
                if self.clip_value is not None:
                    _optim.clip_grad_value(params, self.clip_value)
                if self.clip_norm is not None and not math.isfinite(_optim.clip_grad_norm(params, self.clip_norm)):
                    skipped += 1            # an overflowing gradient: skip the update, keep the weights
                    continue
                opt.step()
                s_lb += loss * b
                s_b += b
                s_steps += steps
                running = s_lb / max(s_steps if self._loss_per == "step" else s_b, 1)
                bar.update(steps if self._unit == "char" else b, steps=steps, loss=running)
            if s_b == 0 and skipped:
                bar.close()
                raise FloatingPointError(f"{type(self).__name__}: the loss is not finite in every batch of "
                                         f"epoch {len(self.loss_curve_) + 1}; lower learning_rate or check "
                                         "the data")
            epoch_loss = s_lb / max(s_steps if self._loss_per == "step" else s_b, 1)
            self.loss_curve_.append(epoch_loss)
            self.n_iter_ = getattr(self, "n_iter_", 0) + 1
            shown = {"loss": epoch_loss}
            if valid is not None:
                val = self._eval_loss(valid)
                self.validation_loss_curve_.append(val)
                shown["val_loss"] = val
                current = val
            else:
                current = epoch_loss
            bar.close(**shown)
            self.fit_time_ = getattr(self, "fit_time_", 0.0) + time.perf_counter() - t0
            if not stop_early:
                continue
            if current < best - self.tol:
                best, bad_epochs = current, 0
                if valid is not None:
                    best_snap = self._snapshot()
            else:
                bad_epochs += 1
                if bad_epochs >= self.n_iter_no_change:
                    if show:
                        print(f"{type(self).__name__}: stopping after epoch {len(self.loss_curve_)}: the "
                              f"{'validation' if valid is not None else 'training'} loss did not improve by "
                              f"tol={self.tol} for {self.n_iter_no_change} epochs", file=sys.stderr)
                    break
        if best_snap is not None:
            self._restore(best_snap)
            self.best_validation_loss_ = best
        self._set_training(False)
        self._release()
        return self

    def _release(self):
        """Drop what the last forward pass kept for its backward (a batch's activations)."""
        for block in self._blocks_.values():
            block._ctx = None
        self.__dict__.pop("_loss_obj", None)

    def _start(self):
        """A new network and a new history (fit without warm_start, the first partial_fit)."""
        self._build()
        self._optimizer_ = None
        self.loss_curve_, self.validation_loss_curve_, self.n_iter_, self.fit_time_ = [], [], 0, 0.0

    def _split(self, data):
        """(train, validation) for early stopping: a random validation_fraction of the samples."""
        n_val = int(round(self.validation_fraction * data.n))
        if n_val < 1 or n_val >= data.n:
            raise ValueError(f"validation_fraction={self.validation_fraction} leaves no validation or no "
                             f"training data with {data.n} samples")
        order = self._rng_.permutation(data.n)
        return data.take(order[n_val:]), data.take(order[:n_val])

    @_guarded
    def _fit(self, X, y):
        """What every fit does: check, encode the data (learning its vocabulary and scaling unless
        warm-starting), build, split for early stopping, train."""
        self._validate()
        fresh = not (self.warm_start and getattr(self, "_blocks_", None) is not None)
        if fresh:
            self._init_rng()
        data = self._make_data(X, y, fit=fresh)
        if fresh:
            self._start()
        valid = None
        if self.early_stopping and self.max_epochs > 0:
            data, valid = self._split(data)
        return self._train(data, self.max_epochs, valid)

    @_guarded
    def _partial_fit(self, X, y, classes=None):
        """One more epoch on (X, y); the first call learns the vocabulary / scaling / classes from it."""
        self._validate()
        first = getattr(self, "_blocks_", None) is None
        if first:
            self._init_rng()
        data = self._make_data(X, y, fit=first, classes=classes)
        if first:
            self._start()
        return self._train(data, 1, stop_early=False)

    # ---- save / load ------------------------------------------------------------------------------

    def _fitted_state(self):
        st = {}
        for name in self._fitted_attrs:
            value = getattr(self, name)
            if isinstance(value, _InputSpec):
                st.update((f"{name}.{k}", v) for k, v in value.state().items())
            else:
                arr = np.asarray(value)
                if arr.dtype == object:
                    raise TypeError(f"save: {name} holds Python objects ({arr!r:.60}); only numbers and "
                                    "strings can be saved without pickle")
                st[name] = arr
        return st

    def _set_fitted_state(self, st):
        """Set the fitted attributes from the entries of `_fitted_state()` in `st` (consumed), each
        checked as fit makes it (ValueError naming the entry)."""
        for name in self._fitted_attrs:
            setattr(self, name, _FITTED_CHECKS[name](self, st, name))

    def save(self, path):
        """Write the hyper-parameters, what fit learnt and every weight to a NumPy .npz file."""
        self._check_fitted()
        params = {}
        for k, v in self.get_params(deep=False).items():
            if k == "dtype":
                v = np.dtype(v).name
            elif k == "random_state" and not (v is None or isinstance(v, numbers.Integral)):
                v = None
            elif isinstance(v, tuple):
                v = list(v)
            elif isinstance(v, np.generic):
                v = v.item()
            params[k] = v
        meta = {"format": _FORMAT_VERSION, "class": type(self).__name__, "params": params,
                "loss_curve": [float(x) for x in self.loss_curve_]}
        arrays = {"__meta__": np.array(json.dumps(meta))}
        for k, v in self._fitted_state().items():
            arrays["state/" + k] = v
        for name, block in self._blocks_.items():
            for k, v in block.parameters().items():
                arrays[f"param/{name}/{k}"] = v
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path):
        """An estimator saved by `save`, ready to predict (`Estimator.load(path)` or `models.load`).
        Nothing in the file is executed; a file that is not as save writes it raises ValueError,
        its message the path and what is wrong."""
        try:
            f = np.load(path, allow_pickle=False)
        except (ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{path}: not a NumPy .npz file ({exc})") from None
        if not isinstance(f, np.lib.npyio.NpzFile):
            raise ValueError(f"{path}: not a NumPy .npz file (a single .npy array)")
        files = {}
        with f:
            for k in f.files:
                try:
                    files[k] = f[k]
                except (ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
                    raise ValueError(f"{path}: {k}: cannot be read ({exc})") from None
                if not isinstance(files[k], np.ndarray):
                    raise ValueError(f"{path}: {k}: not a NumPy array")
        try:
            return cls._from_entries(files)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ValueError(f"{path}: {exc}") from None

    @classmethod
    def _from_entries(cls, files):
        """load's work on the file's arrays (consumed); ValueError naming the entry."""
        meta = _read_meta(files.pop("__meta__", None))
        name, params = meta["class"], dict(meta["params"])
        klass = _ESTIMATORS.get(name) if isinstance(name, str) else None
        if klass is None:
            raise ValueError(f"class: unknown estimator {name!r:.60}, expected one of {list(_ESTIMATORS)}")
        if not issubclass(klass, cls):
            raise ValueError(f"holds a {name}, not a {cls.__name__}")
        names = klass._get_param_names()
        unknown, missing = sorted(set(params) - set(names)), [k for k in names if k not in params]
        if unknown or missing:
            raise ValueError(f"params: unknown {unknown}" if unknown else f"params: missing {missing}")
        if isinstance(params["dtype"], str):
            params["dtype"] = {"float32": np.float32, "float64": np.float64}.get(params["dtype"], params["dtype"])
        est = klass(**params)
        for check, what in ((est._validate, ""), (est._init_rng, "random_state: ")):
            try:
                check()
            except (TypeError, ValueError) as exc:
                raise ValueError(f"params: {what}{exc}") from None
        st = {k[6:]: files.pop(k) for k in sorted(files) if k.startswith("state/")}
        est._set_fitted_state(st)
        try:
            est._build()
        except (TypeError, ValueError, OverflowError) as exc:
            raise ValueError(f"params and state: cannot build the network ({exc})") from None
        for bname, block in est._blocks_.items():
            arrays = {}
            for k, p in block.parameters().items():
                key = f"param/{bname}/{k}"
                a = arrays[k] = files.pop(key, None)
                if a is None:
                    raise ValueError(f"{key}: missing")
                if a.dtype != p.dtype or not np.all(np.isfinite(a)):
                    raise ValueError(f"{key}: expected finite {p.dtype} numbers, got " +
                                     (f"dtype {a.dtype}" if a.dtype != p.dtype else "NaN or infinity"))
            try:
                block.load_state_dict(arrays)
            except ValueError as exc:           # shapes, named by the block
                raise ValueError(f"param/{bname}/{exc}") from None
        extra = sorted(["state/" + k for k in st] + list(files))
        if extra:
            raise ValueError(f"unexpected entries {extra}")
        est._optimizer_ = None
        est.loss_curve_ = list(meta["loss_curve"])
        est.validation_loss_curve_ = []
        est.n_iter_ = len(est.loss_curve_)
        est._set_training(False)
        return est


def load(path):
    """Load any fastrnn estimator saved with `save(path)`."""
    return _RNNEstimator.load(path)


def _add_doc(cls):
    cls.__doc__ = (cls.__doc__ or "") + _COMMON_DOC
    return cls


# =================================================================================================
# one-to-one and many-to-one: the final state -> a Dense head
# =================================================================================================

class _ManyToOne(_RNNEstimator):
    """Encoder (embedding for tokens) -> recurrent layer -> the last layer's final state (both
    directions concatenated) -> Dense head."""

    _fitted_attrs = ("input_spec_", "n_outputs_")

    def _build(self):
        spec = self.input_spec_
        emb, size = self._input_blocks(spec)
        D = 2 if self.bidirectional else 1
        self._blocks_ = OrderedDict()
        if emb is not None:
            self._blocks_["embedding"] = emb
        self._blocks_["rnn"] = self._recurrent(size, self.hidden_size, self.bidirectional)
        self._blocks_["head"] = Dense(D * self.hidden_size, int(self.n_outputs_), dtype=self._dtype, seed=self._seed())

    def _forward(self, x, lengths):
        """Logits (B, n_outputs) of a time-major batch."""
        b = self._blocks_
        e = b["embedding"](x) if "embedding" in b else x
        out, h_n = b["rnn"](e, lengths=lengths)
        D = 2 if self.bidirectional else 1
        feat = np.concatenate(list(h_n[-D:]), axis=1) if D == 2 else h_n[-1]
        self._fwd_shapes = (out.shape, h_n.shape)
        return b["head"](feat)

    def _backward(self, d_logits):
        b = self._blocks_
        d_feat = b["head"].backward(d_logits)
        out_shape, hn_shape = self._fwd_shapes
        D, H = (2 if self.bidirectional else 1), self.hidden_size
        d_hn = np.zeros(hn_shape, self._dtype)
        for d in range(D):
            d_hn[hn_shape[0] - D + d] = d_feat[:, d * H:(d + 1) * H]
        dx, _ = b["rnn"].backward(np.zeros(out_shape, self._dtype), d_hn)
        if "embedding" in b:
            b["embedding"].backward(dx)

    def _batch_loss(self, data, idx, backward):
        x, lengths = data.inputs(idx)
        logits = self._forward(x, lengths)
        loss = self._loss_fn(logits, data.targets["y"][idx])
        if backward:
            self._backward(self._loss_fn.backward())
        return loss, len(idx), int(lengths.sum())

    @_guarded
    @no_grad()
    def _raw_predict(self, X):
        self._check_fitted()
        x, lengths, _ = self.input_spec_.transform(X, self._dtype)
        data = _Data(x, lengths)
        self._set_training(False)
        outs = [self._forward(*data.inputs(idx)) for idx in self._batches(data, None, False,
                                                                          self._predict_batch_size(data))]
        return np.concatenate(outs, axis=0)

    def _make_data(self, X, y, fit, classes=None):
        if fit:
            self.input_spec_ = _InputSpec().fit(X, self.standardize)
        x, lengths, _ = self.input_spec_.transform(X, self._dtype)
        _check_same_length("X", len(lengths), "y", y)
        return _Data(x, lengths, y=self._encode_targets(y, fit=fit, classes=classes))

    def fit(self, X, y):
        """Learn from sequences X (see the module docstring) and one target per sequence y."""
        return self._fit(X, y)

    def partial_fit(self, X, y, classes=None):
        """One more epoch on (X, y), building the network on the first call (whose `classes`, if
        given, fixes the labels of a classifier)."""
        return self._partial_fit(X, y, classes)


@_add_doc
class SequenceClassifier(_ManyToOne):
    """Many-to-one (and one-to-one) classification: a label per sequence.

    >>> clf = SequenceClassifier(hidden_size=64).fit(X, y)     # X (N, T, I) or a list of sequences
    >>> clf.predict(X_new); clf.predict_proba(X_new); clf.score(X_test, y_test)   # accuracy

    Labels may be any sortable values (ints, strings); `classes_` holds them in order. The loss is
    the softmax cross-entropy of the head's logits.
    """

    _estimator_type = "classifier"
    _fitted_attrs = _ManyToOne._fitted_attrs + ("classes_",)

    def __init__(self, cell="gru", hidden_size=64, num_layers=1, bidirectional=False, nonlinearity="tanh",
                 dropout=0.0, embedding_dim=32, standardize=True, optimizer="adam", learning_rate=3e-3,
                 momentum=0.9, weight_decay=0.0, batch_size=32, max_epochs=100, clip_norm=5.0,
                 clip_value=None, early_stopping=False, validation_fraction=0.1, n_iter_no_change=10,
                 tol=1e-4, warm_start=False, random_state=None, verbose=0, dtype=np.float32, backend=None):
        self._store_params(locals())

    _loss_class = _losses.SoftmaxCrossEntropy

    def _encode_targets(self, y, fit, classes=None):
        y = np.asarray(_to_numpy(y))
        if y.ndim != 1:
            raise ValueError(f"y: expected a 1-D array of labels (one per sequence), got shape {y.shape}")
        if fit:
            self.classes_ = np.unique(y if classes is None else np.asarray(classes))
            if len(self.classes_) < 2:
                raise ValueError(f"y: needs at least 2 classes to learn a classifier, got {len(self.classes_)}: "
                                 f"{self.classes_!r}")
            self.n_outputs_ = len(self.classes_)
        pos = np.searchsorted(self.classes_, y)
        pos = np.minimum(pos, len(self.classes_) - 1)
        bad = self.classes_[pos] != y
        if bad.any():
            raise ValueError(f"y: label {_show(y[bad][0])} is not one of the classes {self.classes_.tolist()}")
        return pos.astype(np.int64)

    def predict_proba(self, X):
        """Class probabilities (N, n_classes), columns in the order of classes_."""
        return _losses.softmax(self._raw_predict(X).astype(np.float64), axis=1)

    def predict(self, X):
        """The most probable label of each sequence."""
        best = np.argmax(self._raw_predict(X), axis=1)
        return self.classes_[best]

    def score(self, X, y):
        """Accuracy."""
        return float(np.mean(self.predict(X) == np.asarray(y)))


@_add_doc
class SequenceRegressor(_ManyToOne):
    """Many-to-one (and one-to-one) regression: one value (or a vector) per sequence.

    >>> reg = SequenceRegressor().fit(X, y)    # y (N,) or (N, K)
    >>> reg.predict(X_new); reg.score(X_test, y_test)   # R^2

    Targets are standardised internally (predictions come back in their units); the loss is the
    mean squared error.
    """

    _estimator_type = "regressor"
    _fitted_attrs = _ManyToOne._fitted_attrs + ("y_mean_", "y_scale_", "y_ndim_")

    def __init__(self, cell="gru", hidden_size=64, num_layers=1, bidirectional=False, nonlinearity="tanh",
                 dropout=0.0, embedding_dim=32, standardize=True, optimizer="adam", learning_rate=3e-3,
                 momentum=0.9, weight_decay=0.0, batch_size=32, max_epochs=100, clip_norm=5.0,
                 clip_value=None, early_stopping=False, validation_fraction=0.1, n_iter_no_change=10,
                 tol=1e-4, warm_start=False, random_state=None, verbose=0, dtype=np.float32, backend=None):
        self._store_params(locals())

    _loss_class = _losses.MeanSquaredError

    def _encode_targets(self, y, fit, classes=None):
        y = np.asarray(_to_numpy(y))
        if y.dtype.kind not in "biuf":
            raise TypeError(f"y: expected numeric targets, got dtype {y.dtype}")
        if y.ndim not in (1, 2):
            raise ValueError(f"y: expected shape (N,) or (N, n_outputs), got {y.shape}")
        y = y.astype(np.float64)
        if not np.all(np.isfinite(y)):
            raise ValueError("y: contains NaN or infinity")
        y2 = y.reshape(len(y), -1)
        if fit:
            self.y_ndim_ = y.ndim
            self.n_outputs_ = y2.shape[1]
            if self.standardize:
                self.y_mean_ = y2.mean(axis=0)
                std = y2.std(axis=0)
                self.y_scale_ = np.where(std > 0, std, 1.0)
            else:
                self.y_mean_, self.y_scale_ = np.zeros(y2.shape[1]), np.ones(y2.shape[1])
        if y2.shape[1] != self.n_outputs_:
            raise ValueError(f"y: expected {self.n_outputs_} outputs per sequence (as in fit), got {y2.shape[1]}")
        return ((y2 - self.y_mean_) / self.y_scale_).astype(self._dtype)

    def predict(self, X):
        """Predictions (N,) (or (N, K) when fitted on 2-D targets)."""
        p = self._raw_predict(X).astype(np.float64) * self.y_scale_ + self.y_mean_
        return p[:, 0] if self.y_ndim_ == 1 else p

    def score(self, X, y):
        """Coefficient of determination R^2 (averaged over outputs)."""
        self._check_fitted()
        y = np.asarray(y, dtype=np.float64).reshape(-1, self.n_outputs_)
        p = self.predict(X).reshape(-1, self.n_outputs_)
        ss_res = ((y - p) ** 2).sum(axis=0)
        ss_tot = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
        r2 = np.where(ss_tot > 0, 1 - ss_res / np.where(ss_tot > 0, ss_tot, 1), np.where(ss_res == 0, 1.0, 0.0))
        return float(np.mean(r2))


# =================================================================================================
# many-to-many, Tx = Ty: a label per step
# =================================================================================================

@_add_doc
class SequenceTagger(_RNNEstimator):
    """Many-to-many with Tx = Ty: a label for every step (tagging, frame classification).

    >>> tagger = SequenceTagger(bidirectional=True).fit(X, Y)   # Y: a label sequence per sequence
    >>> tagger.predict(X_new)          # a list of label arrays (a 2-D array for a 3-D / 2-D X)
    >>> tagger.score(X_test, Y_test)   # accuracy over all steps

    Y may be a 2-D array (N, T) or a list of label sequences (arrays, lists, or strings: one label
    per character) whose lengths match X's. The loss is the softmax cross-entropy summed over steps.
    """

    _estimator_type = "classifier"
    _loss_per = "step"
    _fitted_attrs = ("input_spec_", "classes_")
    _loss_class = _losses.SoftmaxCrossEntropy

    def __init__(self, cell="gru", hidden_size=64, num_layers=1, bidirectional=False, nonlinearity="tanh",
                 dropout=0.0, embedding_dim=32, standardize=True, optimizer="adam", learning_rate=3e-3,
                 momentum=0.9, weight_decay=0.0, batch_size=32, max_epochs=100, clip_norm=5.0,
                 clip_value=None, early_stopping=False, validation_fraction=0.1, n_iter_no_change=10,
                 tol=1e-4, warm_start=False, random_state=None, verbose=0, dtype=np.float32, backend=None):
        self._store_params(locals())

    def _build(self):
        emb, size = self._input_blocks(self.input_spec_)
        D = 2 if self.bidirectional else 1
        self._blocks_ = OrderedDict()
        if emb is not None:
            self._blocks_["embedding"] = emb
        self._blocks_["rnn"] = self._recurrent(size, self.hidden_size, self.bidirectional)
        self._blocks_["head"] = Dense(D * self.hidden_size, len(self.classes_), dtype=self._dtype, seed=self._seed())

    def _label_sequences(self, Y, lengths):
        Y = _to_numpy(Y)
        if isinstance(Y, np.ndarray) and Y.dtype != object:
            if Y.ndim != 2:
                raise ValueError(f"y: expected a 2-D array (N, T) or a list of label sequences, got shape {Y.shape}")
            seqs = list(Y)
        else:
            seqs = [np.array(list(s)) if isinstance(s, str) else np.asarray(s) for s in Y]
        _check_same_length("X", len(lengths), "y", seqs)
        for i, (s, n) in enumerate(zip(seqs, lengths)):
            if s.ndim != 1 or len(s) != n:
                raise ValueError(f"y[{i}]: expected {n} labels (one per step of X[{i}]), got shape {s.shape}")
        return seqs

    def _encode_targets(self, Y, lengths, fit, classes=None):
        seqs = self._label_sequences(Y, lengths)
        if fit:
            allv = np.concatenate([s for s in seqs if len(s)]) if any(len(s) for s in seqs) else np.zeros(0)
            self.classes_ = np.unique(allv if classes is None else np.asarray(classes))
            if len(self.classes_) < 2:
                raise ValueError(f"y: needs at least 2 distinct labels, got {self.classes_.tolist()}")
        T = int(lengths.max()) if len(lengths) else 0
        out = np.zeros((len(seqs), T), np.int64)
        for i, s in enumerate(seqs):
            if len(s):
                pos = np.minimum(np.searchsorted(self.classes_, s), len(self.classes_) - 1)
                bad = self.classes_[pos] != s
                if bad.any():
                    raise ValueError(f"y[{i}]: label {_show(s[bad][0])} is not one of the classes "
                                     f"{self.classes_.tolist()}")
                out[i, :len(s)] = pos
        return out

    def _forward(self, x, lengths):
        b = self._blocks_
        e = b["embedding"](x) if "embedding" in b else x
        out, _ = b["rnn"](e, lengths=lengths)
        return b["head"](out)

    def _batch_loss(self, data, idx, backward):
        x, lengths = data.inputs(idx)
        logits = self._forward(x, lengths)
        y = _time_major(data.targets["y"][idx, :x.shape[0]])
        loss = self._loss_fn(logits, y, lengths=lengths)
        if backward:
            b = self._blocks_
            dx, _ = b["rnn"].backward(b["head"].backward(self._loss_fn.backward()))
            if "embedding" in b:
                b["embedding"].backward(dx)
        return loss, len(idx), int(lengths.sum())

    def _make_data(self, X, y, fit, classes=None):
        if fit:
            self.input_spec_ = _InputSpec().fit(X, self.standardize)
        x, lengths, _ = self.input_spec_.transform(X, self._dtype)
        return _Data(x, lengths, y=self._encode_targets(y, lengths, fit=fit, classes=classes))

    def fit(self, X, y):
        """Learn from sequences X and per-step labels y."""
        return self._fit(X, y)

    def partial_fit(self, X, y, classes=None):
        """One more epoch on (X, y), building the network on the first call."""
        return self._partial_fit(X, y, classes)

    @_guarded
    @no_grad()
    def _step_probs(self, X):
        self._check_fitted()
        x, lengths, is_array = self.input_spec_.transform(X, self._dtype)
        data = _Data(x, lengths)
        self._set_training(False)
        probs = []
        for idx in self._batches(data, None, False, self._predict_batch_size(data)):
            xb, lb = data.inputs(idx)
            p = _losses.softmax(self._forward(xb, lb).astype(np.float64), axis=2)
            probs.extend(p[:n, i] for i, n in enumerate(lb))
        return probs, is_array

    def predict_proba(self, X):
        """Per-step class probabilities: a list of (T_i, n_classes) arrays (an (N, T, C) array for array input)."""
        probs, is_array = self._step_probs(X)
        return np.stack(probs) if is_array else probs

    def predict(self, X):
        """A label per step: a list of arrays (a 2-D array (N, T) for array input)."""
        probs, is_array = self._step_probs(X)
        classes = self.classes_
        labels = [classes[np.argmax(p, axis=1)] for p in probs]
        return np.stack(labels) if is_array else labels

    def score(self, X, y):
        """Accuracy over all valid steps."""
        pred = self.predict(X)
        lengths = np.array([len(p) for p in pred], dtype=np.int64)
        seqs = self._label_sequences(y, lengths)
        total = int(lengths.sum())
        right = sum(int(np.sum(np.asarray(p) == s)) for p, s in zip(pred, seqs))
        return right / total if total else 0.0


# =================================================================================================
# one-to-many: a character language model
# =================================================================================================

def _as_text(text, name="text"):
    from .datasets import CharCorpus

    if isinstance(text, CharCorpus):
        return text.text
    if isinstance(text, str):
        return text
    if isinstance(text, (list, tuple)) and all(isinstance(t, str) for t in text):
        return "\n".join(text)
    raise TypeError(f"{name}: expected a str (or a CharCorpus, or a list of str), got {type(text).__name__}")


class _Stream:
    """A language model's data: the character ids of one text."""

    def __init__(self, ids):
        self.ids = ids
        self.n = len(ids)


@_add_doc
class CharLanguageModel(_RNNEstimator):
    """One-to-many: a character-level language model that learns a text and writes more of it.

    >>> lm = CharLanguageModel(hidden_size=256).fit(text)
    >>> print(lm.generate(300, prompt="The ", temperature=0.8, random_state=0))
    >>> lm.score(held_out_text)        # mean log-likelihood per character (nats; higher is better)

    Training: the text is cut into `batch_size` contiguous streams, read `seq_length` characters
    at a time (truncated backpropagation through time); the state is carried from one chunk to the
    next and reset at each epoch, whose start is shifted at random. The loss is the cross-entropy of
    the next character, summed over the chunk's steps; loss_curve_ is per character (nats).
    """

    _loss_per = "step"
    _unit = "char"
    _fitted_attrs = ("chars_", "char_freq_")
    _loss_class = _losses.SoftmaxCrossEntropy

    def __init__(self, cell="gru", hidden_size=256, num_layers=1, nonlinearity="tanh", dropout=0.0,
                 embedding_dim=32, seq_length=64, optimizer="adam", learning_rate=3e-3, momentum=0.9,
                 weight_decay=0.0, batch_size=32, max_epochs=10, clip_norm=5.0, clip_value=None,
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=5, tol=1e-4,
                 warm_start=False, random_state=None, verbose=0, dtype=np.float32, backend=None):
        self._store_params(locals())

    def _validate(self):
        super()._validate()
        if isinstance(self.seq_length, bool) or not isinstance(self.seq_length, numbers.Integral) \
                or self.seq_length < 1:
            raise ValueError(f"seq_length: expected an int >= 1, got {self.seq_length!r}")

    bidirectional = False          # a language model reads left to right
    standardize = False

    def _build(self):
        V = len(self.chars_)
        self._blocks_ = OrderedDict([
            ("embedding", Embedding(V, self.embedding_dim, dtype=self._dtype, seed=self._seed())),
            ("rnn", self._recurrent(self.embedding_dim, self.hidden_size)),
            ("head", Dense(self.hidden_size, V, dtype=self._dtype, seed=self._seed())),
        ])

    @property
    def corpus_(self):
        """The fitted alphabet as a CharCorpus (encode / decode)."""
        from .datasets import CharCorpus
        if getattr(self, "chars_", None) is None:
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet; call fit first")
        if getattr(self, "_corpus", None) is None or self._corpus.chars != self.chars_:
            self._corpus = CharCorpus("", self.chars_)
        return self._corpus

    def _encode(self, text, name="text"):
        return self.corpus_.encode(_as_text(text, name))

    def _make_data(self, text, y=None, fit=False, classes=None):
        text = _as_text(text)
        if len(text) < 2:
            raise ValueError(f"text: empty data: a language model needs at least 2 characters, got {len(text)}")
        if fit:
            self.chars_ = "".join(sorted(set(text)))
            self._corpus = None
        ids = self._encode(text)
        if fit:
            self.char_freq_ = np.bincount(ids, minlength=len(self.chars_)) / len(ids)
        return _Stream(ids)

    def _split(self, data):
        """Early stopping: the last validation_fraction of the text is held out."""
        cut = int(round(data.n * (1 - self.validation_fraction)))
        if cut < 2 or data.n - cut < 2:
            raise ValueError(f"validation_fraction={self.validation_fraction} leaves too little text")
        return _Stream(data.ids[:cut]), _Stream(data.ids[cut:])

    def fit(self, text, y=None):
        """Learn the characters of `text` (a str, a CharCorpus, or a list of str joined by newlines)."""
        return self._fit(text, None)

    def partial_fit(self, text, y=None):
        """One more epoch on `text` (its characters must be in chars_ after the first call)."""
        return self._partial_fit(text, None)

    def _layout(self, n):
        """Streams and chunk length for n characters."""
        T = self.seq_length
        B = max(1, min(self.batch_size, (n - 1) // T if n - 1 >= T else 1))
        return B, T

    def _batches(self, data, rng, shuffle, batch_size=None):
        ids = data.ids
        B, T = self._layout(len(ids))
        if batch_size is not None:          # evaluation: up to batch_size streams of >= 8 chunks each
            B = max(1, min(batch_size, (len(ids) - 1) // (8 * T)))
        start = int(rng.integers(0, T)) if shuffle and len(ids) - 1 > 2 * B * T else 0   # vary the cuts
        per = (len(ids) - 1 - start) // B
        if per < 1:
            return
        x_all = ids[start:start + B * per].reshape(B, per)
        y_all = ids[start + 1:start + 1 + B * per].reshape(B, per)
        carry = [None]
        for j in range(0, per, T):
            yield (_time_major(x_all[:, j:j + T]), _time_major(y_all[:, j:j + T]), carry)

    def _epoch_total(self, data):
        B, _ = self._layout(data.n)
        return ((data.n - 1) // B) * B

    def _batch_loss(self, data, batch, backward):
        x, y, carry = batch
        b = self._blocks_
        out, h_n = b["rnn"](b["embedding"](x), h0=carry[0])
        carry[0] = h_n                           # the next chunk starts here; no gradient flows back
        logits = b["head"](out)
        loss = self._loss_fn(logits, y)
        if backward:
            dx, _ = b["rnn"].backward(b["head"].backward(self._loss_fn.backward()))
            b["embedding"].backward(dx)
        return loss, x.shape[1], x.size

    def _predict_batch_size(self, data=None):
        return 64

    @_guarded
    def score(self, text, y=None):
        """Mean log-likelihood of each next character of `text` (nats per character; higher is better)."""
        self._check_fitted()
        ids = self._encode(text)
        if len(ids) < 2:
            raise ValueError("text: needs at least 2 characters to score")
        return -self._eval_loss(_Stream(ids))

    def perplexity(self, text):
        """exp(-score(text)): the effective number of equally likely next characters."""
        return float(math.exp(-self.score(text)))

    @no_grad()
    def _logits_after(self, ids, h=None):
        """Run ids (1-D) through the network from state h: logits (len, V) and the final state."""
        b = self._blocks_
        out, h = b["rnn"](b["embedding"](ids.reshape(-1, 1)), h0=h)
        return b["head"](out)[:, 0], h

    @_guarded
    def predict_proba(self, text):
        """Probabilities of the next character after each prefix of `text`: (len(text), n_chars),
        columns in the order of chars_."""
        self._check_fitted()
        self._set_training(False)
        ids = self._encode(text)
        logits, _ = self._logits_after(ids)
        return _losses.softmax(logits.astype(np.float64), axis=1)

    def predict(self, text):
        """The most likely next character after each prefix of `text`, as a str of len(text)."""
        p = self.predict_proba(text)
        return "".join(self.chars_[i] for i in np.argmax(p, axis=1))

    @_guarded
    def generate(self, n_chars, prompt="", temperature=1.0, random_state=None):
        """`n_chars` new characters continuing `prompt` (not repeated in the result), sampled from the
        model's distribution sharpened (temperature < 1) or flattened (> 1); temperature=0 picks the
        most likely character every time. An empty prompt starts from a character drawn from the
        training text's character frequencies."""
        self._check_fitted()
        if isinstance(n_chars, bool) or not isinstance(n_chars, numbers.Integral) or n_chars < 0:
            raise ValueError(f"n_chars: expected an int >= 0, got {n_chars!r}")
        if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) \
                or not math.isfinite(temperature) or temperature < 0:
            raise ValueError(f"temperature: expected a number >= 0, got {temperature!r}")
        if not isinstance(prompt, str):
            raise TypeError(f"prompt: expected a str, got {type(prompt).__name__}")
        rng = random_state if isinstance(random_state, np.random.Generator) else np.random.default_rng(random_state)
        self._set_training(False)
        h = None
        if prompt:
            logits, h = self._logits_after(self._encode(prompt, "prompt"))
            probs = self._temper(logits[-1], temperature)
        else:
            probs = np.asarray(self.char_freq_, dtype=np.float64)
        out = []
        for i in range(int(n_chars)):
            c = int(np.argmax(probs)) if temperature == 0 else int(rng.choice(len(probs), p=probs))
            out.append(c)
            if i + 1 < n_chars:
                logits, h = self._logits_after(np.array([c]), h)
                probs = self._temper(logits[-1], temperature)
        return "".join(self.chars_[c] for c in out)

    @staticmethod
    def _temper(logits, temperature):
        z = logits.astype(np.float64)
        if temperature > 0:
            z = z / temperature
        p = _losses.softmax(z)
        return p / p.sum()


# =================================================================================================
# many-to-many, Tx != Ty: encoder-decoder
# =================================================================================================

_BOS = _EOS = 0      # one reserved target id: "start" as the decoder's first input, "end" as its last output


@_add_doc
class Seq2Seq(_RNNEstimator):
    """Many-to-many with Tx != Ty: an encoder-decoder (Sutskever et al. 2014) with dot-product
    attention (Luong et al. 2015; attention=False for the plain encoder-decoder), trained with
    teacher forcing, decoding greedily.

    >>> model = Seq2Seq().fit(sources, targets)     # e.g. lists of strings, or of token sequences
    >>> model.predict(["some input"], max_length=20)
    >>> model.score(sources_test, targets_test)     # exact-match accuracy

    Sources are sequences of any input kind (see the module docstring); targets are sequences of
    tokens (strings: characters; or 1-D arrays / lists of ints or strings) with a vocabulary learnt
    by fit. predict returns strings when fit got string targets, else arrays of tokens. A
    bidirectional encoder gives a decoder of 2 * hidden_size units.
    """

    _estimator_type = None
    _loss_per = "step"
    _fitted_attrs = ("input_spec_", "target_tokens_", "target_is_str_", "max_target_length_")
    _loss_class = _losses.SoftmaxCrossEntropy

    def __init__(self, cell="gru", hidden_size=128, num_layers=1, bidirectional=False, attention=True,
                 nonlinearity="tanh", dropout=0.0, embedding_dim=32, standardize=True, optimizer="adam",
                 learning_rate=3e-3, momentum=0.9, weight_decay=0.0, batch_size=32, max_epochs=50,
                 clip_norm=5.0, clip_value=None, early_stopping=False, validation_fraction=0.1,
                 n_iter_no_change=5, tol=1e-4, warm_start=False, random_state=None, verbose=0,
                 dtype=np.float32, backend=None):
        self._store_params(locals())

    def _validate(self):
        super()._validate()
        if not isinstance(self.attention, (bool, np.bool_)):
            raise ValueError(f"attention: expected True or False, got {self.attention!r}")

    def _build(self):
        emb, size = self._input_blocks(self.input_spec_)
        D = 2 if self.bidirectional else 1
        Hd = D * self.hidden_size
        V = len(self.target_tokens_) + 1
        self._blocks_ = OrderedDict()
        if emb is not None:
            self._blocks_["embedding"] = emb
        self._blocks_["encoder"] = self._recurrent(size, self.hidden_size, self.bidirectional)
        self._blocks_["target_embedding"] = Embedding(V, self.embedding_dim, dtype=self._dtype, seed=self._seed())
        self._blocks_["decoder"] = self._recurrent(self.embedding_dim, Hd)
        if self.attention:
            self._blocks_["attention"] = DotAttention(dtype=self._dtype)
            self._blocks_["combine"] = Dense(2 * Hd, Hd, activation="tanh", dtype=self._dtype, seed=self._seed())
        self._blocks_["head"] = Dense(Hd, V, dtype=self._dtype, seed=self._seed())

    # ---- data -----------------------------------------------------------------------------------

    def _target_sequences(self, targets, n):
        targets = _to_numpy(targets)
        if isinstance(targets, (str, bytes)):
            raise TypeError("targets: expected a collection of sequences, got a single string")
        if isinstance(targets, np.ndarray) and targets.dtype != object and targets.ndim == 2:
            seqs = list(targets)
        else:
            seqs = list(targets)
        _check_same_length("sources", n, "targets", seqs)
        out = []
        for i, s in enumerate(seqs):
            a = np.array(list(s)) if isinstance(s, str) else np.asarray(_to_numpy(s))
            if a.ndim != 1 or a.dtype == object:
                raise ValueError(f"targets[{i}]: expected a 1-D sequence of tokens or a string, got {s!r:.60}")
            out.append(a if a.size else np.zeros(0, dtype=out[0].dtype if out else np.int64))
        return out, all(isinstance(s, str) for s in seqs)

    def _encode_targets(self, targets, n, fit):
        seqs, is_str = self._target_sequences(targets, n)
        if fit:
            self.target_tokens_ = _Vocabulary.fit(seqs, 1).tokens
            if len(self.target_tokens_) == 0:
                raise ValueError("targets: every target sequence is empty; nothing to learn")
            self.target_is_str_ = bool(is_str)
            self.max_target_length_ = int(max(len(s) for s in seqs))
        vocab = _Vocabulary(self.target_tokens_, 1)
        ids = [vocab.encode(s, name=f"targets[{i}]") for i, s in enumerate(seqs)]
        return _pad(ids, np.int64)

    def _make_data(self, sources, targets, fit, classes=None):
        if fit:
            self.input_spec_ = _InputSpec().fit(sources, self.standardize, "sources")
        x, lengths, _ = self.input_spec_.transform(sources, self._dtype, "sources")
        y, y_lengths = self._encode_targets(targets, len(lengths), fit=fit)
        return _Data(x, lengths, y=y, y_lengths=y_lengths)

    def fit(self, sources, targets):
        """Learn to map each source sequence to its target sequence."""
        return self._fit(sources, targets)

    # ---- the network ------------------------------------------------------------------------------

    def _encode(self, x, lengths):
        b = self._blocks_
        e = b["embedding"](x) if "embedding" in b else x
        enc_out, h_n = b["encoder"](e, lengths=lengths)
        if self.bidirectional:     # (L*2, B, H) -> (L, B, 2H): the decoder layer l starts from both halves
            L = self.num_layers
            h_n = np.concatenate([h_n[0::2], h_n[1::2]], axis=2)
            h_n = h_n.reshape(L, h_n.shape[1], -1)
        return enc_out, h_n

    def _encode_backward(self, d_enc_out, d_h0):
        b = self._blocks_
        if self.bidirectional:
            H = self.hidden_size
            d_hn = np.empty((2 * self.num_layers,) + d_h0.shape[1:2] + (H,), self._dtype)
            d_hn[0::2], d_hn[1::2] = d_h0[:, :, :H], d_h0[:, :, H:]
        else:
            d_hn = d_h0
        dx, _ = b["encoder"].backward(d_enc_out, d_hn)
        if "embedding" in b:
            b["embedding"].backward(dx)

    def _decode_step(self, y_in, h0, enc_out, src_lengths, y_lengths=None):
        """Decoder over target inputs y_in (Ty, B) from h0: logits (Ty, B, V) and the final state."""
        b = self._blocks_
        dec_out, h_n = b["decoder"](b["target_embedding"](y_in), h0=h0, lengths=y_lengths)
        top = dec_out
        if self.attention:
            context, _ = b["attention"](dec_out, enc_out, src_lengths)
            top = b["combine"](np.concatenate([context, dec_out], axis=2))
        return b["head"](top), h_n, dec_out.shape

    def _decode_backward(self, d_logits, dec_shape):
        b = self._blocks_
        d_top = b["head"].backward(d_logits)
        d_enc_out = None
        if self.attention:
            Hd = dec_shape[2]
            d_cat = b["combine"].backward(d_top)
            d_query, d_enc_out = b["attention"].backward(d_cat[:, :, :Hd])
            d_dec_out = d_cat[:, :, Hd:] + d_query
        else:
            d_dec_out = d_top
        dx, dh0 = b["decoder"].backward(d_dec_out)
        b["target_embedding"].backward(dx)
        return d_enc_out, dh0

    def _batch_loss(self, data, idx, backward):
        x, src_lengths = data.inputs(idx)
        y_lengths = data.targets["y_lengths"][idx]
        Ty = int(y_lengths.max()) + 1 if len(idx) else 1
        y = np.zeros((len(idx), Ty), np.int64)
        y[:, :Ty - 1] = data.targets["y"][idx, :Ty - 1]
        B = len(idx)
        y_in = np.concatenate([np.full((B, 1), _BOS, np.int64), y[:, :-1]], axis=1)   # teacher forcing
        y_out = y.copy()
        y_out[np.arange(B), y_lengths] = _EOS
        enc_out, h0 = self._encode(x, src_lengths)
        logits, _, dec_shape = self._decode_step(_time_major(y_in), h0, enc_out, src_lengths, y_lengths + 1)
        loss = self._loss_fn(logits, _time_major(y_out), lengths=y_lengths + 1)
        if backward:
            d_enc_out, dh0 = self._decode_backward(self._loss_fn.backward(), dec_shape)
            if d_enc_out is None:
                d_enc_out = np.zeros(enc_out.shape, self._dtype)
            self._encode_backward(d_enc_out, dh0)
        return loss, B, int((y_lengths + 1).sum())

    def _predict_batch_size(self, data=None):
        return max(self.batch_size, 256)

    @_guarded
    def predict(self, sources, max_length=None):
        """Greedy decoding: each source's most likely output, one token at a time, until the end
        token or `max_length` tokens (default: twice the longest target seen in fit)."""
        self._check_fitted()
        if max_length is None:
            max_length = 2 * int(self.max_target_length_) + 5
        if isinstance(max_length, bool) or not isinstance(max_length, numbers.Integral) or max_length < 0:
            raise ValueError(f"max_length: expected an int >= 0, got {max_length!r}")
        x, lengths, _ = self.input_spec_.transform(sources, self._dtype, "sources")
        data = _Data(x, lengths)
        self._set_training(False)
        with no_grad():
            return self._decode_all(data, max_length)

    def _decode_all(self, data, max_length):
        """Greedy decoding of every source in `data` (predict's loop)."""
        results = []
        for idx in self._batches(data, None, False, self._predict_batch_size()):
            xb, lb = data.inputs(idx)
            enc_out, h = self._encode(xb, lb)
            B = len(idx)
            prev = np.full((1, B), _BOS, np.int64)
            steps = np.zeros((int(max_length), B), np.int64)
            done = np.zeros(B, bool)
            for t in range(int(max_length)):
                logits, h, _ = self._decode_step(prev, h, enc_out, lb)
                nxt = np.argmax(logits[0], axis=1)
                nxt[done] = _EOS
                steps[t] = nxt
                done |= nxt == _EOS
                prev = nxt[None]
                if done.all():
                    break
            for i in range(B):
                seq = steps[:, i]
                end = np.flatnonzero(seq == _EOS)
                seq = seq[:end[0]] if end.size else seq
                tokens = self.target_tokens_[seq - 1]
                results.append("".join(tokens.tolist()) if self.target_is_str_ else tokens)
        return results

    def score(self, sources, targets, max_length=None):
        """Exact-match accuracy of predict: the fraction of sources decoded exactly to their target."""
        pred = self.predict(sources, max_length)
        seqs, _ = self._target_sequences(targets, len(pred))
        hits = 0
        for p, t in zip(pred, seqs):
            p = np.array(list(p)) if isinstance(p, str) else np.asarray(p)
            hits += int(len(p) == len(t) and np.array_equal(p, t))
        return hits / len(pred)


_ESTIMATORS = {cls.__name__: cls for cls in (SequenceClassifier, SequenceRegressor, SequenceTagger,
                                             CharLanguageModel, Seq2Seq)}
