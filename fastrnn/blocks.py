"""Building blocks that sit beside the recurrent layers, each with its backward right after its forward.

    dense = fastrnn.Dense(in_features, out_features, bias=True, activation=None, dtype=np.float32, seed=None)
    y = dense(x)                  # x (..., in_features) -> y (..., out_features), at every time step
    dx = dense.backward(dy)       # weight / bias gradients accumulate (+=) into dense.grads

    emb = fastrnn.Embedding(num_embeddings, embedding_dim, dtype=np.float32, seed=None)
    e = emb(ids)                  # integer ids (...) -> vectors (..., embedding_dim): a row lookup,
    emb.backward(de)              # no one-hot products; returns None (ids have no gradient)

    att = DotAttention()          # scaled dot-product attention of a decoder over encoder outputs
    context, weights = att(query, keys, key_lengths=None)
    d_query, d_keys = att.backward(d_context)

They share the recurrent layers' protocol: `parameters()` (PyTorch names: "weight", "bias"),
`grads`, `zero_grad()`, `state_dict()`, `load_state_dict()`, `train()` / `eval()`; so an optimizer
from `fastrnn.optim` updates a Dense, an Embedding and a GRU alike.
"""
import math

import numpy as np

from ._activations import ACTIVATIONS
from ._params import Parameters
from ._validation import check, check_shape, real_array, to_numpy

__all__ = ["Block", "Dense", "Embedding", "DotAttention"]


class Block(Parameters):
    """What every block shares: named parameters and their gradients, modes, state dicts
    (fastrnn._params.Parameters), and the forward's context for the backward."""

    _what = "block"

    def __init__(self, dtype=np.float32):
        self._init_params(dtype)
        self._ctx = None

    def _need_forward(self):
        if self._ctx is None:
            raise RuntimeError(f"{type(self).__name__}.backward: call forward before backward")
        return self._ctx

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)


# ---- Dense --------------------------------------------------------------------------------------

class Dense(Block):
    """y = g(x W^T + b), applied to the last axis (so at every time step of a (T, B, in) array).

    `weight` (out_features, in_features) and `bias` (out_features,) as torch.nn.Linear, initialised
    U(-1/sqrt(in), 1/sqrt(in)); `activation` g is None (identity), "tanh", "relu" or "sigmoid".
    The notes' output layer ŷ<t> = g(Wya a<t> + by) is a Dense followed by a loss of
    `fastrnn.losses`, which applies the softmax / sigmoid itself (fused, numerically stable).
    """

    def __init__(self, in_features, out_features, bias=True, activation=None, dtype=np.float32, seed=None):
        super().__init__(dtype)
        self.in_features = check("in_features", in_features)
        self.out_features = check("out_features", out_features)
        if not (activation is None or isinstance(activation, str)) or activation not in ACTIVATIONS:
            raise ValueError(f"activation: expected one of {list(ACTIVATIONS)}, got {activation!r}")
        self.activation = activation
        self.bias = bool(bias)
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        bound = 1.0 / math.sqrt(self.in_features)
        self._add_param("weight", rng.uniform(-bound, bound, (self.out_features, self.in_features)))
        if self.bias:
            self._add_param("bias", rng.uniform(-bound, bound, self.out_features))

    def forward(self, x):
        x = real_array("x", x, self.dtype)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"x: expected shape (..., {self.in_features}) (in_features last), got {x.shape}")
        x2 = x.reshape(-1, self.in_features)
        y = x2 @ self._params["weight"].T
        if self.bias:
            y += self._params["bias"]
        y = ACTIVATIONS[self.activation].forward(y)
        self._ctx = (x2, y if self.activation else None, x.shape)
        return y.reshape(x.shape[:-1] + (self.out_features,))

    def backward(self, dy):
        """dx = dense.backward(dy); dy has the forward output's shape. Gradients accumulate."""
        x2, y, shape = self._need_forward()
        dy = real_array("dy", dy, self.dtype)
        check_shape("dy", dy, shape[:-1] + (self.out_features,), "(the forward output's shape)")
        d = dy.reshape(-1, self.out_features)
        if self.activation is not None:
            d = ACTIVATIONS[self.activation].backward(d, y)
        dw = d.T @ x2
        db = d.sum(axis=0) if self.bias else None
        with self._grads_lock:
            self.grads["weight"] += dw
            if self.bias:
                self.grads["bias"] += db
        return (d @ self._params["weight"]).reshape(shape)

    def __repr__(self):
        extra = "" if self.activation is None else f", activation={self.activation!r}"
        extra += "" if self.bias else ", bias=False"
        return f"Dense({self.in_features}, {self.out_features}{extra})"


# ---- Embedding ----------------------------------------------------------------------------------

def check_ids(name, ids, n):
    """`ids` as an int64 array with every value in [0, n): TypeError for non-integers, ValueError
    naming the offending value otherwise."""
    ids = np.asarray(to_numpy(ids))
    if ids.dtype == np.bool_ or ids.dtype.kind not in "iu":
        if ids.dtype.kind == "f" and ids.size and np.all(np.isfinite(ids)) and np.all(ids == np.round(ids)):
            ids = ids.astype(np.int64)
        elif ids.size == 0 and ids.dtype.kind == "f":
            ids = ids.astype(np.int64)
        else:
            raise TypeError(f"{name}: expected integer token ids, got dtype {ids.dtype}")
    if ids.size:
        lo, hi = ids.min(), ids.max()
        if lo < 0 or hi >= n:
            bad = lo if lo < 0 else hi
            raise ValueError(f"{name}: token id {bad} out of range [0, {n}) (vocabulary of {n} tokens)")
    return ids.astype(np.int64, copy=False)


class Embedding(Block):
    """Token ids -> vectors: a row lookup in `weight` (num_embeddings, embedding_dim), initialised
    N(0, 1) as torch.nn.Embedding. The backward adds each output gradient to its token's row
    (a scatter-add), never a one-hot product."""

    def __init__(self, num_embeddings, embedding_dim, dtype=np.float32, seed=None):
        super().__init__(dtype)
        self.num_embeddings = check("num_embeddings", num_embeddings)
        self.embedding_dim = check("embedding_dim", embedding_dim)
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self._add_param("weight", rng.standard_normal((self.num_embeddings, self.embedding_dim)))

    def forward(self, ids):
        ids = check_ids("ids", ids, self.num_embeddings)
        self._ctx = ids
        return self._params["weight"][ids]

    def backward(self, d_out):
        """Scatter-add d_out (ids.shape + (embedding_dim,)) into grads["weight"]; returns None."""
        ids = self._need_forward()
        d_out = real_array("d_out", d_out, self.dtype)
        check_shape("d_out", d_out, ids.shape + (self.embedding_dim,), "(the forward output's shape)")
        flat = ids.ravel()
        d2 = d_out.reshape(-1, self.embedding_dim)
        if flat.size > 4 * self.num_embeddings:
            # many repeats (a language model's batch): sort once, then sum each run of one id
            order = np.argsort(flat, kind="stable")
            sorted_ids = flat[order]
            starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
            sums = np.add.reduceat(d2[order], starts, axis=0)
            with self._grads_lock:
                self.grads["weight"][sorted_ids[starts]] += sums
        else:
            with self._grads_lock:
                np.add.at(self.grads["weight"], flat, d2)
        return None

    def __repr__(self):
        return f"Embedding({self.num_embeddings}, {self.embedding_dim})"


# ---- attention ------------------------------------------------------------------------------------

class DotAttention(Block):
    """Scaled dot-product attention (Luong et al. 2015, "dot", scaled by 1/sqrt(H)) of every query
    step over the valid key steps, time-major:

        scores[b, q, k] = <query[q, b], keys[k, b]> / sqrt(H)     (k >= key_lengths[b] masked out)
        weights = softmax over k;   context[q, b] = sum_k weights[b, q, k] keys[k, b]

    query (Tq, B, H), keys (Tk, B, H) -> context (Tq, B, H), weights (B, Tq, Tk). No parameters.
    A sequence with no valid key gets a zero context."""

    def forward(self, query, keys, key_lengths=None):
        query = np.asarray(query)
        keys = np.asarray(keys)
        if query.ndim != 3 or keys.ndim != 3 or query.shape[1:] != keys.shape[1:]:
            raise ValueError(f"query, keys: expected shapes (Tq, B, H) and (Tk, B, H), got {query.shape} "
                             f"and {keys.shape}")
        Tq, B, H = query.shape
        Tk = keys.shape[0]
        q = query.transpose(1, 0, 2)            # (B, Tq, H)
        k = keys.transpose(1, 0, 2)             # (B, Tk, H)
        scale = 1.0 / math.sqrt(H)
        scores = np.matmul(q, k.transpose(0, 2, 1)) * scale        # (B, Tq, Tk)
        valid = None
        if key_lengths is not None:
            key_lengths = np.asarray(key_lengths)
            valid = np.arange(Tk)[None, :] < key_lengths[:, None]   # (B, Tk)
            scores = np.where(valid[:, None, :], scores, -np.inf)
        with np.errstate(invalid="ignore"):
            m = np.max(scores, axis=2, keepdims=True) if Tk else np.zeros((B, Tq, 1), scores.dtype)
            m = np.where(np.isfinite(m), m, 0)
            w = np.exp(scores - m)
            s = w.sum(axis=2, keepdims=True)
            w = np.where(s > 0, w / np.where(s > 0, s, 1), 0).astype(query.dtype, copy=False)
        context = np.matmul(w, k)                                    # (B, Tq, H)
        self._ctx = (q, k, w, scale)
        return np.ascontiguousarray(context.transpose(1, 0, 2)), w

    def backward(self, d_context):
        """d_query (Tq, B, H), d_keys (Tk, B, H) from d_context (Tq, B, H)."""
        q, k, w, scale = self._need_forward()
        dc = np.asarray(d_context, dtype=q.dtype).transpose(1, 0, 2)     # (B, Tq, H)
        dw = np.matmul(dc, k.transpose(0, 2, 1))                         # (B, Tq, Tk)
        dk = np.matmul(w.transpose(0, 2, 1), dc)                         # (B, Tk, H) from context
        ds = w * (dw - np.sum(dw * w, axis=2, keepdims=True)) * scale    # softmax backward
        dq = np.matmul(ds, k)
        dk += np.matmul(ds.transpose(0, 2, 1), q)
        return np.ascontiguousarray(dq.transpose(1, 0, 2)), np.ascontiguousarray(dk.transpose(1, 0, 2))

    def __repr__(self):
        return "DotAttention()"
