"""One-to-one and many-to-one: the final state -> a Dense head (SequenceClassifier,
SequenceRegressor)."""
import numpy as np

from .. import losses as _losses
from .._config import no_grad
from .._validation import to_numpy
from ._base import _public, _RecurrentHead
from ._inputs import _check_same_length, _show
from ._training import _guarded


class _ManyToOne(_RecurrentHead):
    """Encoder (embedding for tokens) -> recurrent layer -> the last layer's final state (both
    directions concatenated) -> Dense head."""

    _fitted_attrs = ("input_spec_", "n_outputs_")

    def _n_head_outputs(self):
        return int(self.n_outputs_)

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
        batches, _ = self._inference_batches(X)
        return np.concatenate([self._forward(x, lengths) for x, lengths in batches], axis=0)

    def _encode_targets(self, y, lengths, fit, classes=None):
        _check_same_length("X", len(lengths), "y", y)
        return self._encode_y(y, fit, classes)

    def fit(self, X, y):
        """Learn from sequences X (see the module docstring) and one target per sequence y."""
        return self._fit(X, y)

    def partial_fit(self, X, y, classes=None):
        """One more epoch on (X, y), building the network on the first call (whose `classes`, if
        given, fixes the labels of a classifier)."""
        return self._partial_fit(X, y, classes)


@_public
class SequenceClassifier(_ManyToOne):
    """Many-to-one (and one-to-one) classification: a label per sequence.

    >>> clf = SequenceClassifier(hidden_size=64).fit(X, y)     # X (N, T, I) or a list of sequences
    >>> clf.predict(X_new); clf.predict_proba(X_new); clf.score(X_test, y_test)   # accuracy

    Labels may be any sortable values (ints, strings); `classes_` holds them in order. The loss is
    the softmax cross-entropy of the head's logits.
    """

    _estimator_type = "classifier"
    _fitted_attrs = _ManyToOne._fitted_attrs + ("classes_",)
    _loss_class = _losses.SoftmaxCrossEntropy

    def _encode_y(self, y, fit, classes=None):
        y = np.asarray(to_numpy(y))
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


@_public
class SequenceRegressor(_ManyToOne):
    """Many-to-one (and one-to-one) regression: one value (or a vector) per sequence.

    >>> reg = SequenceRegressor().fit(X, y)    # y (N,) or (N, K)
    >>> reg.predict(X_new); reg.score(X_test, y_test)   # R^2

    Targets are standardised internally (predictions come back in their units); the loss is the
    mean squared error.
    """

    _estimator_type = "regressor"
    _fitted_attrs = _ManyToOne._fitted_attrs + ("y_mean_", "y_scale_", "y_ndim_")
    _loss_class = _losses.MeanSquaredError

    def _encode_y(self, y, fit, classes=None):
        y = np.asarray(to_numpy(y))
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
