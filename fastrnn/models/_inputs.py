"""Inputs: parsing (every form the module docstring of fastrnn.models lists), vocabularies,
standardisation, padding, and the padded training data `_Data`."""
import numpy as np

from .._validation import to_numpy
from ..blocks import check_ids
from ._persistence import _check_floats, _check_int, _check_labels, _entry


def _show(v):
    """A label or token as the user wrote it (no 'np.int64(...)' around it) for error messages."""
    return repr(v.item() if isinstance(v, np.generic) else v)


def _is_int_kind(a):
    return a.dtype.kind in "iu"


# ---- parsing: (kind, sequences, is_array) -------------------------------------------------------

def _parse_sequences(X, name="X"):
    """(kind, sequences, is_array) with kind "features" (list/array of (T_i, I) float), "ids"
    (int), "tokens" (arrays of str). An input array stays one array (N, T, ...)."""
    X = to_numpy(X)
    if X is None:
        raise ValueError(f"{name}: expected sequences, got None")
    if isinstance(X, (str, bytes)):
        raise TypeError(f"{name}: expected a collection of sequences, got a single {type(X).__name__}; "
                        f"pass [{name.lower()}] for one sequence")
    if isinstance(X, np.ndarray) and X.dtype != object:
        return _parse_array(X, name)
    return _parse_list(X, name)


def _parse_array(X, name):
    """One array (not of objects): (N, T, I) features, (N, I) one-step features, (N, T) token ids
    or (N, T) string tokens."""
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


def _parse_list(X, name):
    """A collection of sequences, each parsed by `_parse_one`; all of one kind (empty ones take the
    others'; all empty: "ids"), the features all of one width."""
    try:
        items = list(X)
    except TypeError:
        raise TypeError(f"{name}: expected an array or a list of sequences, got {type(X).__name__}") from None
    if not items:
        raise ValueError(f"{name}: empty data: expected at least one sequence, got none")
    parsed = [_parse_one(to_numpy(item), f"{name}[{i}]") for i, item in enumerate(items)]
    seqs, kinds = [a for a, _ in parsed], {kind for _, kind in parsed} - {"empty"}
    if len(kinds) > 1:
        raise ValueError(f"{name}: mixed sequence kinds {sorted(kinds)}; use one kind for all sequences")
    kind = kinds.pop() if kinds else "ids"
    if kind == "features":
        seqs = _same_width(seqs, name)
    elif kind == "ids":
        seqs = [s.astype(np.int64) if s.size else np.zeros(0, np.int64) for s in seqs]
    return kind, seqs, False


def _parse_one(item, where):
    """One sequence of a list as (array, kind): a string or 1-D str array ("tokens"), a 1-D int
    array ("ids"), a 1-D float array (one feature) or a 2-D numeric one ("features"), or a 1-D
    array of no steps and no usable dtype ("empty")."""
    if isinstance(item, str):
        return np.array(list(item), dtype=str).reshape(len(item)), "tokens"
    try:
        a = np.asarray(item)
    except ValueError as exc:
        raise ValueError(f"{where}: ragged: every step of a sequence must have the same number of "
                         f"features ({exc})") from None
    if a.dtype == object:
        raise ValueError(f"{where}: ragged or mixed: expected a (T_i, I) numeric array, a 1-D sequence "
                         f"of token ids or a string; every step must have the same number of features")
    if a.ndim == 0:
        raise ValueError(f"{where}: expected a sequence, got the scalar {item!r}; for one-step inputs "
                         f"pass a 2-D array (N, I)")
    if a.ndim == 2 and a.dtype.kind in "biuf":
        return a, "features"
    if a.ndim != 1:
        raise ValueError(f"{where}: expected a (T_i, I) array, a 1-D sequence or a string, got shape {a.shape}")
    if _is_int_kind(a):
        return a, "ids"
    if a.dtype.kind in "bf":
        return a[:, None], "features"
    if a.dtype.kind in "US":
        return a.astype(str), "tokens"
    if a.size == 0:
        return a, "empty"
    raise TypeError(f"{where}: unsupported dtype {a.dtype}")


def _same_width(seqs, name):
    """Feature sequences of one width (that of the non-empty ones); the empty ones reshaped to it."""
    seqs = [s.reshape(0, 1) if s.ndim == 1 else s for s in seqs]   # empty 1-D -> (0, 1)
    widths = {s.shape[1] for s in seqs if s.shape[0]} or {seqs[0].shape[1]}
    if len(widths) > 1:
        bad = next(i for i, s in enumerate(seqs) if s.shape[0] and s.shape[1] != seqs[0].shape[1])
        raise ValueError(f"{name}[{bad}]: has {seqs[bad].shape[1]} features per step, but {name}[0] has "
                         f"{seqs[0].shape[1]}; every sequence needs the same number of features")
    w = widths.pop()
    return [s if s.shape[0] else np.zeros((0, w)) for s in seqs]


def _check_same_length(name_x, n_x, name_y, y):
    """ValueError unless `y` holds one target per sequence of `name_x`."""
    if not isinstance(y, (list, tuple)):
        y = to_numpy(y)
        if y is None or isinstance(y, (str, bytes)) or not hasattr(y, "__len__") or np.ndim(y) == 0:
            raise ValueError(f"{name_y}: expected {n_x} targets (one per sequence of {name_x}), got {y!r:.60}")
    if len(y) != n_x:
        raise ValueError(f"{name_y}: expected {n_x} targets (one per sequence of {name_x}), got {len(y)}")


# ---- padding, vocabularies, the fitted input spec -----------------------------------------------

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
            if isinstance(seqs, np.ndarray):
                top, low = int(seqs.max()), int(seqs.min())
            else:
                top = int(max((s.max() for s in seqs if s.size), default=-1))
                low = int(min((s.min() for s in seqs if s.size), default=0))
            if low < 0:
                raise ValueError(f"{name}: token ids must be >= 0, got {low}")
            self.n_tokens = top + 1
        else:
            self.vocab = _Vocabulary.fit(list(seqs), offset=1)
            self.n_tokens = len(self.vocab)
        if self.n_tokens == 0 and kind != "features":
            self.n_tokens = 1
        return self

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
