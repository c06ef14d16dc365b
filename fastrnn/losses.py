"""Losses for the output head ŷ<t> = g(Wya a<t> + by), each with its backward right after its forward.

As in the notes, a sequence's loss is summed over its time steps, L = Σ_t L(ŷ<t>, y<t>); a batch's
loss is the mean over its sequences. Masked steps (t >= lengths[b], or mask == 0) contribute
nothing and get a zero gradient.

    loss_fn = SoftmaxCrossEntropy()                # or BinaryCrossEntropy(), MeanSquaredError()
    loss = loss_fn(logits, target, lengths=None, mask=None)   # a Python float
    d_logits = loss_fn.backward()                  # dL/d(input), the input's shape and dtype

Shapes: the input's last axis holds classes (cross-entropy) or outputs (BCE, MSE); the axes before
it are either (B,) -- one step per sequence: one-to-one and many-to-one -- or (T, B) time-major
(`batch_first=True`: (B, T)), one loss term per step:

    SoftmaxCrossEntropy  input (..., C) logits, target (...) integer class ids in [0, C)
    BinaryCrossEntropy   input (..., K) logits, target (..., K) in [0, 1]   (sigmoid built in)
    MeanSquaredError     input (..., K),        target (..., K)

A step's loss is the cross-entropy -log softmax(z)[y]; for BCE and MSE it is the mean over the K
outputs (so K = 1 gives the usual per-step value). Softmax and sigmoid are fused with their losses
(log-sum-exp, stable for any logits). Targets at masked steps are ignored (padding such as -1 is
fine there); invalid targets elsewhere raise ValueError naming them.
"""
import numpy as np

from ._threads import PerThread
from ._activations import sigmoid as _sigmoid
from ._validation import real_array, to_numpy

__all__ = ["Loss", "SoftmaxCrossEntropy", "BinaryCrossEntropy", "MeanSquaredError",
           "softmax", "log_softmax", "sigmoid", "step_weights"]


def softmax(z, axis=-1):
    """Softmax along `axis`, stable for any finite logits."""
    z = np.asarray(z)
    e = np.exp(z - np.max(z, axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(z, axis=-1):
    z = np.asarray(z)
    s = z - np.max(z, axis=axis, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=axis, keepdims=True))


def sigmoid(z):
    """Logistic function, no overflow for large |z|."""
    return _sigmoid(np.asarray(z, dtype=np.result_type(np.asarray(z).dtype, np.float32)))


def step_weights(lead_shape, lengths=None, mask=None, batch_first=False):
    """The weight of every loss term, shape `lead_shape` ((B,) or (T, B) / (B, T)), from `lengths`
    (B,) and/or `mask` (lead_shape; bools or non-negative weights). None when neither is given."""
    if lengths is None and mask is None:
        return None
    w = np.ones(lead_shape, dtype=np.float64)
    if lengths is not None:
        lengths = np.asarray(to_numpy(lengths))
        if lengths.dtype == np.bool_ or lengths.dtype.kind not in "iu":
            raise ValueError(f"lengths: expected integers, got dtype {lengths.dtype}")
        if len(lead_shape) == 1:
            raise ValueError("lengths: only meaningful with a time axis (input of shape (T, B, ...)); "
                             "use mask for per-sequence weights")
        B = lead_shape[0] if batch_first else lead_shape[1]
        T = lead_shape[1] if batch_first else lead_shape[0]
        if lengths.shape != (B,):
            raise ValueError(f"lengths: expected shape ({B},) (one length per sequence), got {lengths.shape}")
        if lengths.size and (lengths.min() < 0 or lengths.max() > T):
            raise ValueError(f"lengths: every length must lie in [0, T={T}], got min {lengths.min()} "
                             f"max {lengths.max()}")
        valid = np.arange(T)[:, None] < lengths[None, :]          # (T, B)
        w *= valid.T if batch_first else valid
    if mask is not None:
        m = np.asarray(to_numpy(mask))
        if m.shape != tuple(lead_shape):
            raise ValueError(f"mask: expected shape {tuple(lead_shape)} (the input without its last axis), "
                             f"got {m.shape}")
        if m.dtype.kind not in "biuf":
            raise TypeError(f"mask: expected booleans or numbers, got dtype {m.dtype}")
        m = m.astype(np.float64)
        if np.any(~np.isfinite(m)) or np.any(m < 0):
            raise ValueError("mask: expected non-negative finite weights")
        w *= m
    return w


class Loss(PerThread):
    """Shared machinery: input checks, step weights, the batch size, and the call protocol."""

    def __init__(self, batch_first=False):
        self.batch_first = bool(batch_first)
        self._ctx = None

    def __call__(self, input, target, lengths=None, mask=None):
        return self.forward(input, target, lengths=lengths, mask=mask)

    def _input(self, input):
        x = np.asarray(to_numpy(input))
        if x.dtype.kind != "f":
            x = real_array("input", x, np.float64)
        if x.ndim not in (2, 3):
            raise ValueError(f"input: expected shape (B, C) or (T, B, C) ({'(B, T, C)' if self.batch_first else ''}"
                             f" with batch_first), got {x.shape}")
        return x

    def _elementwise(self, input, target, lengths, mask):
        """Input z and a target y of the same shape, the leading (step) shape, the width K, the step
        weights w (None: all steps count) and the mask of steps that count."""
        z = self._input(input)
        y = real_array("target", target, z.dtype)
        if y.shape != z.shape:
            raise ValueError(f"target: expected shape {z.shape} (the input's), got {y.shape}")
        lead, K = z.shape[:-1], z.shape[-1]
        w = step_weights(lead, lengths, mask, self.batch_first)
        active = np.ones(lead, bool) if w is None else w > 0
        return z, y, lead, K, w, active

    def _batch_size(self, lead_shape):
        if len(lead_shape) == 1 or self.batch_first:
            return lead_shape[0]
        return lead_shape[1]

    def backward(self, grad=1.0):
        """dL/d(input) of the last forward call, times `grad` (the upstream dL_total/dL)."""
        if self._ctx is None:
            raise RuntimeError(f"{type(self).__name__}.backward: call forward before backward")
        d = self._backward()
        return d if grad == 1.0 else d * d.dtype.type(grad)

    def __repr__(self):
        return f"{type(self).__name__}()" if not self.batch_first else f"{type(self).__name__}(batch_first=True)"


class SoftmaxCrossEntropy(Loss):
    """Softmax + cross-entropy: per step -log softmax(z)[y]; summed over steps, mean over the batch."""

    def forward(self, input, target, lengths=None, mask=None):
        z = self._input(input)
        lead = z.shape[:-1]
        C = z.shape[-1]
        y = np.asarray(to_numpy(target))
        if y.shape != lead:
            raise ValueError(f"target: expected shape {lead} (the input without its class axis), got {y.shape}")
        if y.dtype == np.bool_ or y.dtype.kind not in "iu":
            raise TypeError(f"target: expected integer class ids, got dtype {y.dtype}")
        w = step_weights(lead, lengths, mask, self.batch_first)
        active = np.ones(lead, bool) if w is None else w > 0
        ya = y[active]
        if ya.size and (ya.min() < 0 or ya.max() >= C):
            bad = ya.min() if ya.min() < 0 else ya.max()
            raise ValueError(f"target: class id {bad} out of range [0, {C}) for input with {C} classes")
        y = np.where(active, y, 0).astype(np.intp)
        B = self._batch_size(lead)
        z2 = z.reshape(-1, C)
        y1 = y.ravel()
        # fused, one pass over the logits: p = softmax(z), loss = logsumexp(z) - z[y]
        m = z2.max(axis=1, keepdims=True) if C else np.zeros((z2.shape[0], 1), z.dtype)
        p = np.exp(z2 - m)
        s = p.sum(axis=1, keepdims=True)
        rows = np.arange(z2.shape[0])
        nll = (np.log(s[:, 0]) + m[:, 0] - z2[rows, y1]).astype(np.float64)
        p /= s
        wf = None if w is None else w.ravel()
        total = float(nll.sum() if wf is None else (nll * wf)[wf > 0].sum())
        self._ctx = (p, y1, rows, wf, B, z.shape, z.dtype)
        return total / B if B else 0.0

    def _backward(self):
        p, y1, rows, wf, B, shape, dtype = self._ctx
        d = p.copy()
        d[rows, y1] -= 1
        scale = 1.0 / B if B else 0.0
        if wf is None:
            d *= dtype.type(scale)
        else:
            d *= (wf * scale).astype(dtype)[:, None]
            d[wf == 0] = 0          # masked steps: exactly zero, even next to non-finite logits
        return d.reshape(shape)


class BinaryCrossEntropy(Loss):
    """Sigmoid + binary cross-entropy on logits: per step the mean over the K outputs of
    -[y log σ(z) + (1 - y) log(1 - σ(z))]; summed over steps, mean over the batch."""

    def forward(self, input, target, lengths=None, mask=None):
        z, y, lead, K, w, active = self._elementwise(input, target, lengths, mask)
        ya = y[active]
        if ya.size and (np.any(~np.isfinite(ya)) or ya.min() < 0 or ya.max() > 1):
            raise ValueError(f"target: expected values in [0, 1] for binary cross-entropy, got min "
                             f"{ya.min()} max {ya.max()}")
        y = np.where(active[..., None], y, 0)
        # stable: max(z, 0) - z y + log(1 + exp(-|z|))
        per = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
        per_step = per.mean(axis=-1, dtype=np.float64) if K else np.zeros(lead)
        B = self._batch_size(lead)
        total = float(per_step.sum() if w is None else (per_step * w)[w > 0].sum())
        self._ctx = (z, y, w, B, K)
        return total / B if B else 0.0

    def _backward(self):
        z, y, w, B, K = self._ctx
        scale = 1.0 / (B * K) if B and K else 0.0
        d = (_sigmoid(z) - y) * z.dtype.type(scale)
        if w is not None:
            d *= w.astype(z.dtype)[..., None]
            d[w == 0] = 0
        return d


class MeanSquaredError(Loss):
    """Squared error: per step the mean over the K outputs of (ŷ - y)^2; summed over steps, mean
    over the batch. With K = 1 and no time axis this is the usual MSE."""

    def forward(self, input, target, lengths=None, mask=None):
        z, y, lead, K, w, active = self._elementwise(input, target, lengths, mask)
        diff = np.where(active[..., None], z - y, 0)
        per_step = np.mean(diff.astype(np.float64) ** 2, axis=-1) if K else np.zeros(lead)
        B = self._batch_size(lead)
        total = float(per_step.sum() if w is None else (per_step * w).sum())
        self._ctx = (diff, w, B, K)
        return total / B if B else 0.0

    def _backward(self):
        diff, w, B, K = self._ctx
        scale = 2.0 / (B * K) if B and K else 0.0
        d = diff * diff.dtype.type(scale)
        if w is not None:
            d *= w.astype(diff.dtype)[..., None]
        return d
