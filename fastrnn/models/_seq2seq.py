"""Many-to-many, Tx != Ty: an encoder-decoder with attention (Seq2Seq)."""
from collections import OrderedDict

import numpy as np

from .. import losses as _losses
from .._config import no_grad
from .._validation import Int, boolean, to_numpy
from ..blocks import Dense, DotAttention, Embedding
from ._base import _public, _RNNEstimator
from ._inputs import _check_same_length, _Data, _InputSpec, _pad, _time_major, _Vocabulary
from ._training import _guarded

_BOS = _EOS = 0      # one reserved target id: "start" as the decoder's first input, "end" as its last output


@_public
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

    _parameter_constraints = {**_RNNEstimator._parameter_constraints, "attention": boolean}

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
        targets = to_numpy(targets)
        if isinstance(targets, (str, bytes)):
            raise TypeError("targets: expected a collection of sequences, got a single string")
        seqs = list(targets)
        _check_same_length("sources", n, "targets", seqs)
        out = []
        for i, s in enumerate(seqs):
            a = np.array(list(s)) if isinstance(s, str) else np.asarray(to_numpy(s))
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
        Int(0)("max_length", max_length)
        batches, _ = self._inference_batches(sources, "sources")
        with no_grad():
            return self._decode_all(batches, max_length)

    def _decode_all(self, batches, max_length):
        """Greedy decoding of every source in `batches` (predict's loop)."""
        results = []
        for xb, lb in batches:
            enc_out, h = self._encode(xb, lb)
            B = len(lb)
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
