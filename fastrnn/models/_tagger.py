"""Many-to-many with Tx = Ty: a label per step (SequenceTagger)."""
import numpy as np

from .. import losses as _losses
from .._config import no_grad
from .._validation import to_numpy
from ._base import _public, _RecurrentHead
from ._inputs import _check_same_length, _show, _time_major
from ._training import _guarded


@_public
class SequenceTagger(_RecurrentHead):
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

    def _n_head_outputs(self):
        return len(self.classes_)

    def _label_sequences(self, Y, lengths):
        Y = to_numpy(Y)
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

    def fit(self, X, y):
        """Learn from sequences X and per-step labels y."""
        return self._fit(X, y)

    def partial_fit(self, X, y, classes=None):
        """One more epoch on (X, y), building the network on the first call."""
        return self._partial_fit(X, y, classes)

    @_guarded
    @no_grad()
    def _step_probs(self, X):
        batches, is_array = self._inference_batches(X)
        probs = []
        for xb, lb in batches:
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
