"""Optimizers and gradient clipping for anything with `parameters()` and `grads` (the recurrent
layers, Dense, Embedding), updating the parameter arrays in place.

    opt = fastrnn.optim.Adam([embedding, gru, dense], lr=1e-3)   # blocks, or (param, grad) pairs
    loss = ...; ...backward...                                   # gradients accumulate into .grads
    norm = fastrnn.optim.clip_grad_norm(opt.params, max_norm=5.0)  # the norm before clipping
    opt.step(); opt.zero_grad()

SGD(params, lr, momentum=0, nesterov=False, weight_decay=0) and Adam(params, lr=1e-3,
betas=(0.9, 0.999), eps=1e-8, weight_decay=0) follow torch.optim's update rules exactly
(weight_decay is the L2 term added to the gradient), so the two can be checked against each other.
"""
import math
import numbers

import numpy as np

__all__ = ["Optimizer", "SGD", "Adam", "clip_grad_norm", "clip_grad_value", "param_pairs"]


def param_pairs(params):
    """[(param, grad), ...] from a block (anything with parameters() and grads), a list of blocks,
    a list of (param, grad) pairs, or a mapping name -> block. Each array appears once."""
    if hasattr(params, "parameters") and hasattr(params, "grads"):
        params = [params]
    elif isinstance(params, dict):
        params = list(params.values())
    pairs, seen = [], set()
    for item in params:
        if hasattr(item, "parameters") and hasattr(item, "grads"):
            p = item.parameters()
            new = [(p[k], item.grads[k]) for k in p]
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            new = [tuple(item)]
        else:
            raise TypeError(f"params: expected blocks (with parameters() and grads) or (param, grad) pairs, "
                            f"got {type(item).__name__}")
        for p, g in new:
            if not isinstance(p, np.ndarray) or not isinstance(g, np.ndarray) or p.shape != g.shape:
                raise TypeError("params: each parameter and its gradient must be NumPy arrays of one shape")
            if id(p) not in seen:
                seen.add(id(p))
                pairs.append((p, g))
    return pairs


def _grads(params_or_grads):
    """The gradient arrays of `param_pairs(...)`, or the arrays themselves when given a list of arrays."""
    if isinstance(params_or_grads, (list, tuple)) and all(isinstance(a, np.ndarray) for a in params_or_grads):
        return list(params_or_grads)
    return [g for _, g in param_pairs(params_or_grads)]


def _positive(name, value, allow_zero=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name}: expected a {'non-negative' if allow_zero else 'positive'} number, got {value!r}")
    return float(value)


def clip_grad_norm(params_or_grads, max_norm):
    """Scale all gradients together so that their global L2 norm is at most `max_norm`; returns the
    norm before clipping (as torch.nn.utils.clip_grad_norm_). A non-finite norm leaves the
    gradients as they are (the caller sees it in the returned value)."""
    max_norm = _positive("max_norm", max_norm)
    grads = _grads(params_or_grads)
    total = math.sqrt(sum(float(np.dot(g.ravel(), g.ravel())) for g in grads))
    if math.isfinite(total) and total > max_norm:
        scale = max_norm / (total + 1e-6)
        for g in grads:
            g *= g.dtype.type(scale)
    return total


def clip_grad_value(params_or_grads, clip_value):
    """Clip every gradient element to [-clip_value, clip_value], in place."""
    clip_value = _positive("clip_value", clip_value)
    for g in _grads(params_or_grads):
        np.clip(g, -clip_value, clip_value, out=g)


class Optimizer:
    """Holds the (param, grad) pairs; `step()` updates the params in place, `zero_grad()` clears grads."""

    def __init__(self, params, lr):
        self.params = param_pairs(params)
        self.lr = _positive("lr", lr)
        self.t = 0

    def zero_grad(self):
        for _, g in self.params:
            g.fill(0)

    def step(self):
        self.t += 1
        for i, (p, g) in enumerate(self.params):
            self._update(i, p, g)

    def _update(self, i, p, g):
        raise NotImplementedError


class SGD(Optimizer):
    """p -= lr * v, v = momentum * v + (g + weight_decay * p) (torch.optim.SGD, dampening 0)."""

    def __init__(self, params, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(params, lr)
        self.momentum = _positive("momentum", momentum, allow_zero=True)
        self.weight_decay = _positive("weight_decay", weight_decay, allow_zero=True)
        self.nesterov = bool(nesterov)
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov: needs momentum > 0")
        self._velocity = [None] * len(self.params)

    def _update(self, i, p, g):
        d = g if self.weight_decay == 0 else g + p.dtype.type(self.weight_decay) * p
        if self.momentum:
            v = self._velocity[i]
            if v is None:
                v = self._velocity[i] = np.array(d, dtype=p.dtype, copy=True)
            else:
                v *= p.dtype.type(self.momentum)
                v += d
            d = d + p.dtype.type(self.momentum) * v if self.nesterov else v
        p -= p.dtype.type(self.lr) * d


class Adam(Optimizer):
    """Adam (Kingma & Ba), bias-corrected, as torch.optim.Adam (weight_decay: L2 added to the gradient)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"betas: expected two numbers in [0, 1), got {betas!r}")
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = _positive("eps", eps)
        self.weight_decay = _positive("weight_decay", weight_decay, allow_zero=True)
        self._m = [np.zeros_like(p) for p, _ in self.params]
        self._v = [np.zeros_like(p) for p, _ in self.params]

    def _update(self, i, p, g):
        b1, b2 = self.betas
        if self.weight_decay:
            g = g + p.dtype.type(self.weight_decay) * p
        m, v = self._m[i], self._v[i]
        m *= p.dtype.type(b1)
        m += p.dtype.type(1 - b1) * g
        v *= p.dtype.type(b2)
        v += p.dtype.type(1 - b2) * (g * g)
        step = self.lr / (1 - b1 ** self.t)
        denom = np.sqrt(v / (1 - b2 ** self.t))
        denom += p.dtype.type(self.eps)
        p -= p.dtype.type(step) * (m / denom)
