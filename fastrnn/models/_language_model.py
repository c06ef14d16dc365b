"""One-to-many: a character language model (CharLanguageModel)."""
import math
import numbers
from collections import OrderedDict

import numpy as np

from .. import losses as _losses
from .._config import no_grad
from .._validation import Int
from ..blocks import Dense, Embedding
from ._base import NotFittedError, _public, _RNNEstimator
from ._inputs import _time_major
from ._training import _guarded


def _as_text(text, name="text"):
    from ..datasets import CharCorpus

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


@_public
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

    _parameter_constraints = {**_RNNEstimator._parameter_constraints, "seq_length": Int(1)}

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
        from ..datasets import CharCorpus
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
        Int(0)("n_chars", n_chars)
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
