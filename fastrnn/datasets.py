"""Data for recurrent networks: the classic long-range tasks, character corpora, padding.

    X, y = adding_problem(n_samples, length)            # X (N, T, 2) float, y (N,)
    X, Y = copy_memory(n_samples, delay)                # X, Y (N, delay + 2*copy_length) token ids
    corpus = text_corpus("book.txt")                    # any text file -> a CharCorpus
    corpus = CharCorpus(python_docs_text())             # a real English text shipped with Python
    padded, lengths = pad_sequences(list_of_arrays)     # ragged -> (N, T_max, ...) + lengths

The adding problem (Hochreiter & Schmidhuber 1997; Le et al. 2015): every step carries a number
drawn U(0, 1) and a marker; exactly two steps are marked, one in each half of the sequence, and the
target is the sum of the two marked numbers. Predicting the constant 1 gives a mean squared error
of 1/6 ≈ 0.167 (ADDING_BASELINE_MSE), the trivial baseline: a network below it has learned to find
and remember the marked numbers across up to `length` steps.

The copy-memory task (Arjovsky et al. 2016): `copy_length` symbols, `delay` steps of blanks with a
"go" marker at the end, then the network must output the symbols in order. Output blanks until
the end and guess uniformly gives a cross-entropy of copy_length * log(n_symbols) per sequence
(copy_memory_baseline), the memoryless baseline.
"""
import math
import os

import numpy as np

__all__ = ["adding_problem", "ADDING_BASELINE_MSE", "copy_memory", "copy_memory_baseline",
           "CharCorpus", "text_corpus", "python_docs_text", "pad_sequences"]

ADDING_BASELINE_MSE = 1.0 / 6.0   # Var(U1 + U2) of two independent U(0, 1): the error of predicting 1


def _rng(random_state):
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2 ** 31 - 1))
    return np.random.default_rng(random_state)


def _count(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return int(value)


def adding_problem(n_samples, length, random_state=None, dtype=np.float32):
    """The adding problem: X (n_samples, length, 2): [:, :, 0] ~ U(0, 1), [:, :, 1] two markers
    (one in the first half, one in the second); y (n_samples,) the sum of the two marked numbers."""
    n = _count("n_samples", n_samples, 0)
    T = _count("length", length, 2)
    rng = _rng(random_state)
    X = np.zeros((n, T, 2), dtype=dtype)
    X[:, :, 0] = rng.random((n, T))
    half = T // 2
    first = rng.integers(0, half, n)
    second = rng.integers(half, T, n)
    rows = np.arange(n)
    X[rows, first, 1] = 1
    X[rows, second, 1] = 1
    y = (X[rows, first, 0].astype(np.float64) + X[rows, second, 0]).astype(dtype)
    return X, y


def copy_memory(n_samples, delay, copy_length=10, n_symbols=8, random_state=None):
    """The copy-memory task as token ids, for a SequenceTagger (a label per step).

    Ids: 0 blank, 1..n_symbols the symbols, n_symbols + 1 the "go" marker. Length T = delay +
    2 * copy_length. X: the symbols, delay - 1 blanks, the marker, copy_length blanks.
    Y: delay + copy_length blanks, then the symbols. Both (n_samples, T) int64."""
    n = _count("n_samples", n_samples, 0)
    delay = _count("delay", delay, 1)
    k = _count("copy_length", copy_length, 1)
    s = _count("n_symbols", n_symbols, 1)
    rng = _rng(random_state)
    T = delay + 2 * k
    symbols = rng.integers(1, s + 1, (n, k))
    X = np.zeros((n, T), np.int64)
    Y = np.zeros((n, T), np.int64)
    X[:, :k] = symbols
    X[:, k + delay - 1] = s + 1
    Y[:, delay + k:] = symbols
    return X, Y


def copy_memory_baseline(delay, copy_length=10, n_symbols=8):
    """Cross-entropy (summed over steps, per sequence) of the memoryless strategy: blanks, then a
    uniform guess among the symbols for the last copy_length steps."""
    return copy_length * math.log(n_symbols)


class CharCorpus:
    """A text as a character corpus: `text`, its sorted alphabet `chars`, ids in [0, len(chars)).

        corpus = CharCorpus(text)
        corpus.ids                 # np.int64 array, one id per character
        corpus.encode("abc"); corpus.decode([3, 4, 5])
        train, valid = corpus.split(0.1)
    """

    def __init__(self, text, chars=None):
        if not isinstance(text, str):
            raise TypeError(f"text: expected a str, got {type(text).__name__}")
        if chars is None:
            chars = sorted(set(text))
        self.chars = "".join(chars)
        if len(set(self.chars)) != len(self.chars):
            raise ValueError("chars: the alphabet has repeated characters")
        self.text = text
        self._codes = np.array([ord(c) for c in self.chars], dtype=np.int64)
        self._order = np.argsort(self._codes)
        self.ids = self.encode(text)

    @property
    def vocab_size(self):
        return len(self.chars)

    def __len__(self):
        return len(self.text)

    def __repr__(self):
        return f"CharCorpus({len(self.text)} characters, {len(self.chars)} distinct)"

    def encode(self, text):
        """Ids of the characters of `text`; ValueError naming any character outside the alphabet."""
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.int64)
        if codes.size == 0:
            return np.zeros(0, np.int64)
        sorted_codes = self._codes[self._order]
        pos = np.searchsorted(sorted_codes, codes)
        pos = np.minimum(pos, len(sorted_codes) - 1) if len(sorted_codes) else pos
        ok = sorted_codes[pos] == codes if len(sorted_codes) else np.zeros(codes.shape, bool)
        if not ok.all():
            bad = sorted({chr(c) for c in codes[~ok][:1000]})
            raise ValueError(f"text: characters not in the corpus alphabet: {''.join(bad)!r}")
        return self._order[pos]

    def decode(self, ids):
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self.chars)):
            raise ValueError(f"ids: expected ids in [0, {len(self.chars)}), got min {ids.min()} max {ids.max()}")
        return "".join(self.chars[i] for i in ids.tolist())

    def split(self, validation_fraction=0.1):
        """(train, validation) corpora with the same alphabet: the last fraction of the text."""
        if not 0 <= validation_fraction < 1:
            raise ValueError(f"validation_fraction: expected a number in [0, 1), got {validation_fraction!r}")
        cut = int(round(len(self.text) * (1 - validation_fraction)))
        return CharCorpus(self.text[:cut], self.chars), CharCorpus(self.text[cut:], self.chars)


def text_corpus(path, encoding="utf-8", errors="replace", lowercase=False, max_chars=None):
    """Read any text file into a CharCorpus (undecodable bytes become U+FFFD with errors="replace";
    Windows line ends become "\\n"). ValueError for an empty file."""
    path = os.fspath(path)
    with open(path, "r", encoding=encoding, errors=errors, newline=None) as f:
        text = f.read() if max_chars is None else f.read(int(max_chars))
    if lowercase:
        text = text.lower()
    if not text:
        raise ValueError(f"{path}: the file is empty; a character corpus needs some text")
    return CharCorpus(text)


def python_docs_text(max_chars=None):
    """A real English text that ships with CPython: the help topics of the language reference
    (pydoc_data.topics, ~450k characters); falls back on Python's LICENSE text."""
    text = ""
    try:
        from pydoc_data.topics import topics
        text = "\n\n".join(topics[k].strip() for k in sorted(topics))
    except Exception:
        pass
    if not text:
        import sys
        for cand in (os.path.join(sys.prefix, "lib", f"python{sys.version_info[0]}.{sys.version_info[1]}", "LICENSE.txt"),
                     os.path.join(sys.base_prefix, "LICENSE.txt")):
            if os.path.exists(cand):
                with open(cand, encoding="utf-8", errors="replace") as f:
                    text = f.read()
                break
    if not text:
        raise RuntimeError("python_docs_text: neither pydoc_data.topics nor Python's LICENSE.txt was found")
    return text if max_chars is None else text[:int(max_chars)]


def pad_sequences(sequences, value=0, dtype=None):
    """A list of N arrays (T_i, ...) (same trailing shape) -> padded (N, max T_i, ...) and lengths (N,)."""
    seqs = [np.asarray(s) for s in sequences]
    if not seqs:
        raise ValueError("sequences: expected at least one sequence, got none")
    for i, s in enumerate(seqs):
        if s.ndim == 0:
            raise ValueError(f"sequences[{i}]: expected a sequence (T_i, ...), got a scalar")
        if s.shape[1:] != seqs[0].shape[1:]:
            raise ValueError(f"sequences[{i}]: every step must have shape {seqs[0].shape[1:]} "
                             f"(as sequences[0]), got {s.shape[1:]}")
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    dtype = np.result_type(*seqs) if dtype is None else dtype
    out = np.full((len(seqs), int(lengths.max())) + seqs[0].shape[1:], value, dtype=dtype)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
    return out, lengths
