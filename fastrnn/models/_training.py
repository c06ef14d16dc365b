"""The one training loop every estimator shares (`_Training._train`): mini-batches in random
order, weight decay, gradient clipping, Adam or SGD, the loss per epoch, early stopping
(`_update_no_improvement_count`), the best weights kept; and the BLAS guard of the estimators'
public methods."""
import contextlib
import functools
import math
import sys
import time

import numpy as np

from .. import optim as _optim
from .._config import get_num_threads, no_grad
from .._progress import Progress


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


class _LossSum:
    """The mean loss over batches, the one formula behind the running loss of the progress bar,
    an epoch's loss (loss_curve_) and the validation loss: each batch's mean loss weighted by its
    sequences, divided by the sequences, or by the steps for an estimator whose loss is per step
    (`per="step"`: per time step, per token)."""

    def __init__(self, per):
        self.per_step = per == "step"
        self.total = self.sequences = self.steps = 0.0

    def add(self, loss, sequences, steps):
        """One batch: its mean loss per sequence (what `_batch_loss` returns), its sequences, its steps."""
        self.total += loss * sequences
        self.sequences += sequences
        self.steps += steps

    @property
    def mean(self):
        return self.total / max(self.steps if self.per_step else self.sequences, 1)


def _update_no_improvement_count(loss, best_loss, count, tol):
    """Early stopping's bookkeeping after an epoch (as scikit-learn's MLP does it): (best_loss,
    count), the best loss so far and the number of epochs in a row whose loss did not improve on it
    by more than `tol`. An epoch that does improve by more becomes the best and resets the count
    (the caller keeps its weights when the loss is a validation loss); training stops when the
    count reaches n_iter_no_change."""
    if loss < best_loss - tol:
        return loss, 0
    return best_loss, count + 1


class _Training:
    """The training loop of `_RNNEstimator` (see there what a subclass provides)."""

    # ---- the blocks as one network ----------------------------------------------------------------

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

    # ---- batches and losses -----------------------------------------------------------------------

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
            total = _LossSum(self._loss_per)
            for batch in self._batches(data, self._rng_, False, batch_size=self._predict_batch_size(data)):
                total.add(*self._batch_loss(data, batch, backward=False))
        finally:
            self._set_training(True)
        return total.mean

    def _predict_batch_size(self, data=None):
        T = int(data.lengths.max()) if data is not None and hasattr(data, "lengths") and data.n else 100
        return int(max(self.batch_size, min(512, 2 ** 16 // max(T, 1))))

    # ---- the one training loop -------------------------------------------------------------------

    def _train(self, data, epochs, valid=None, stop_early=True):
        """Run `epochs` epochs of mini-batch training on `data` (validation on `valid`), stopping
        early (when stop_early) once the loss - of `valid` if given, else of `data` - stops
        improving; with `valid`, the weights of its best epoch are kept."""
        if getattr(self, "_optimizer_", None) is None:
            self._optimizer_ = self._make_optimizer()
        params, decayed = list(self._blocks_.values()), self._decayed()
        self._set_training(True)
        best, best_snap, no_improvement = math.inf, None, 0
        for epoch in range(epochs):
            t0 = time.perf_counter()
            desc = f"{type(self).__name__} epoch {epoch + 1}/{epochs}" if epochs > 1 else \
                f"{type(self).__name__} epoch {len(self.loss_curve_) + 1}"
            bar = Progress(self._epoch_total(data), desc=desc, unit=self._unit, enabled=bool(self.verbose))
            epoch_loss = self._train_epoch(data, bar, params, decayed)
            self.loss_curve_.append(epoch_loss)
            self.n_iter_ = getattr(self, "n_iter_", 0) + 1
            shown = {"loss": epoch_loss}
            if valid is not None:
                shown["val_loss"] = self._eval_loss(valid)
                self.validation_loss_curve_.append(shown["val_loss"])
            bar.close(**shown)
            self.fit_time_ = getattr(self, "fit_time_", 0.0) + time.perf_counter() - t0
            if not stop_early:
                continue
            best, no_improvement = _update_no_improvement_count(shown.get("val_loss", epoch_loss), best,
                                                                no_improvement, self.tol)
            if no_improvement == 0:
                if valid is not None:
                    best_snap = self._snapshot()
            elif no_improvement >= self.n_iter_no_change:
                if self.verbose:
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

    def _train_epoch(self, data, bar, params, decayed):
        """One pass over `data` in random mini-batches; its mean loss. A batch whose loss is not
        finite, or whose gradient overflows, is skipped; FloatingPointError when every one is."""
        total, skipped = _LossSum(self._loss_per), 0
        for batch in self._batches(data, self._rng_, True):
            self._zero_grad()
            loss, b, steps = self._batch_loss(data, batch, backward=True)
            if not (math.isfinite(loss) and self._update(params, decayed)):
                skipped += 1
                continue
            total.add(loss, b, steps)
            bar.update(steps if self._unit == "char" else b, steps=steps, loss=total.mean)
        if total.sequences == 0 and skipped:
            bar.close()
            raise FloatingPointError(f"{type(self).__name__}: the loss is not finite in every batch of "
                                     f"epoch {len(self.loss_curve_) + 1}; lower learning_rate or check "
                                     "the data")
        return total.mean

    def _update(self, params, decayed):
        """Weight decay, clipping and the optimizer's step on a batch's gradients; False, the
        weights untouched, when the gradient overflows."""
        if self.weight_decay:
            for p, g in decayed:             # the L2 term weight_decay * |W|^2 / 2
                g += p.dtype.type(self.weight_decay) * p
        if self.clip_value is not None:
            _optim.clip_grad_value(params, self.clip_value)
        if self.clip_norm is not None and not math.isfinite(_optim.clip_grad_norm(params, self.clip_norm)):
            return False            # an overflowing gradient: skip the update, keep the weights
        self._optimizer_.step()
        return True

    def _release(self):
        """Drop what the last forward pass kept for its backward (a batch's activations)."""
        for block in self._blocks_.values():
            block._ctx = None
        self.__dict__.pop("_loss_obj", None)

    # ---- fit and partial_fit ----------------------------------------------------------------------

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
