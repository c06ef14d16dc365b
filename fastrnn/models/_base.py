"""What every estimator shares: scikit-learn's estimator protocol (BaseEstimator, without
scikit-learn), NotFittedError, the hyper-parameters and their checks, the blocks every family
builds, and save / load (the file's format: `_persistence`)."""
import inspect
import json
import numbers
from collections import OrderedDict

import numpy as np

from .._validation import CONSTRAINTS, Choice, Int, Real, boolean, validate_params
from ..blocks import Dense, Embedding
from ..layers import GRU, RNN
from ._inputs import _Data, _InputSpec
from ._persistence import (_FORMAT_VERSION, _check_chars, _check_flag, _check_floats, _check_int, _check_labels,
                           _read_archive, _read_meta)
from ._training import _Training


class NotFittedError(ValueError, AttributeError):
    """Predicting, scoring or saving before fit (as sklearn.exceptions.NotFittedError)."""


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
# The public estimators: their common documentation, and their names for load
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

_ESTIMATORS = {}        # the class named in a model file -> the estimator that load makes of it


def _public(cls):
    """A public estimator: the common parameters appended to its docstring, its name known to load."""
    cls.__doc__ = (cls.__doc__ or "") + _COMMON_DOC
    _ESTIMATORS[cls.__name__] = cls
    return cls


# =================================================================================================
# Checks of the fitted attributes that load reads back from a file
# =================================================================================================

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
# The shared estimator: hyper-parameters, blocks, the training loop (_Training), save / load
# =================================================================================================

class _RNNEstimator(_Training, BaseEstimator):
    """What every estimator shares (the training loop itself: _Training). A subclass provides
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

    # The hyper-parameters' rules (fastrnn._validation), checked by fit in this order. The sizes are
    # Int(1), not CONSTRAINTS' positive_int, whose TypeError would change what fit and load have always
    # said (a ValueError "expected an int >= 1", for a float or a bool too).
    _parameter_constraints = {
        "cell": Choice("gru", "rnn"),
        "nonlinearity": CONSTRAINTS["nonlinearity"],
        "optimizer": Choice("adam", "sgd"),
        "hidden_size": Int(1), "num_layers": Int(1), "embedding_dim": Int(1), "batch_size": Int(1),
        "n_iter_no_change": Int(1), "max_epochs": Int(0), "verbose": Int(0),
        "learning_rate": Real(0, lo_open=True),
        "momentum": Real(0, 1),
        "weight_decay": Real(0),
        "dropout": Real(0, 0.999),
        "tol": Real(0),
        "validation_fraction": Real(0, 0.9),
        "clip_norm": Real(0, lo_open=True, none_ok=True),
        "clip_value": Real(0, lo_open=True, none_ok=True),
        "dtype": CONSTRAINTS["dtype"],
        "bidirectional": boolean,
    }

    def _validate(self):
        """Check the hyper-parameters; returns nothing, raises ValueError / TypeError naming one."""
        validate_params(self._parameter_constraints, self)
        if self.backend is not None:
            from .. import _backends
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

    def _check_fitted(self):
        if getattr(self, "_blocks_", None) is None:
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet; call fit first")

    @property
    def n_parameters_(self):
        """Number of trained parameters."""
        self._check_fitted()
        return int(sum(p.size for b in self._blocks_.values() for p in b.parameters().values()))

    def _inference_batches(self, X, name="X"):
        """X encoded as in fit, the blocks set to inference: (the batches' time-major inputs and
        lengths, an iterator; whether X was one array)."""
        self._check_fitted()
        x, lengths, is_array = self.input_spec_.transform(X, self._dtype, name)
        data = _Data(x, lengths)
        self._set_training(False)
        batches = self._batches(data, None, False, self._predict_batch_size(data))
        return (data.inputs(idx) for idx in batches), is_array

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
        files = _read_archive(path)
        try:
            return cls._from_entries(files)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ValueError(f"{path}: {exc}") from None

    @classmethod
    def _from_entries(cls, files):
        """load's work on the file's arrays (consumed); ValueError naming the entry."""
        meta = _read_meta(files.pop("__meta__", None))
        est = cls._from_params(meta["class"], dict(meta["params"]))
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

    @classmethod
    def _from_params(cls, name, params):
        """The estimator of class `name` (a `cls`) that the file's params make, checked as fit checks them."""
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
        for check_params, what in ((est._validate, ""), (est._init_rng, "random_state: ")):
            try:
                check_params()
            except (TypeError, ValueError) as exc:
                raise ValueError(f"params: {what}{exc}") from None
        return est


def load(path):
    """Load any fastrnn estimator saved with `save(path)`."""
    return _RNNEstimator.load(path)


# =================================================================================================
# The estimators of sequences X with a recurrent layer and a Dense head
# =================================================================================================

class _RecurrentHead(_RNNEstimator):
    """X (an Embedding for tokens) -> a recurrent layer -> a Dense head: the many-to-one estimators
    (the head on the last layer's final state) and the tagger (on every step). Their parameters and
    defaults, written once."""

    def __init__(self, cell="gru", hidden_size=64, num_layers=1, bidirectional=False, nonlinearity="tanh",
                 dropout=0.0, embedding_dim=32, standardize=True, optimizer="adam", learning_rate=3e-3,
                 momentum=0.9, weight_decay=0.0, batch_size=32, max_epochs=100, clip_norm=5.0,
                 clip_value=None, early_stopping=False, validation_fraction=0.1, n_iter_no_change=10,
                 tol=1e-4, warm_start=False, random_state=None, verbose=0, dtype=np.float32, backend=None):
        self._store_params(locals())

    def _n_head_outputs(self):
        """The head's width: the classes, or the regression targets."""
        raise NotImplementedError

    def _build(self):
        emb, size = self._input_blocks(self.input_spec_)
        D = 2 if self.bidirectional else 1
        self._blocks_ = OrderedDict()
        if emb is not None:
            self._blocks_["embedding"] = emb
        self._blocks_["rnn"] = self._recurrent(size, self.hidden_size, self.bidirectional)
        self._blocks_["head"] = Dense(D * self.hidden_size, self._n_head_outputs(), dtype=self._dtype,
                                      seed=self._seed())

    def _make_data(self, X, y, fit, classes=None):
        if fit:
            self.input_spec_ = _InputSpec().fit(X, self.standardize)
        x, lengths, _ = self.input_spec_.transform(X, self._dtype)
        return _Data(x, lengths, y=self._encode_targets(y, lengths, fit=fit, classes=classes))
