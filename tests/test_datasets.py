"""The long-range tasks, character corpora and padding."""
import math

import numpy as np
import pytest

from fastrnn import datasets


def test_adding_problem_layout():
    X, y = datasets.adding_problem(500, 30, random_state=0)
    assert X.shape == (500, 30, 2) and y.shape == (500,) and X.dtype == np.float32
    markers = X[:, :, 1]
    assert np.all(markers.sum(axis=1) == 2)
    assert np.all(markers[:, :15].sum(axis=1) == 1) and np.all(markers[:, 15:].sum(axis=1) == 1)
    np.testing.assert_allclose(y, (X[:, :, 0] * markers).sum(axis=1), rtol=1e-6)
    assert X[:, :, 0].min() >= 0 and X[:, :, 0].max() < 1
    X2, y2 = datasets.adding_problem(500, 30, random_state=0)
    np.testing.assert_array_equal(X, X2)
    assert not np.array_equal(X, datasets.adding_problem(500, 30, random_state=1)[0])


def test_adding_problem_baseline():
    _, y = datasets.adding_problem(200_000, 4, random_state=0)
    assert np.mean((y - 1.0) ** 2) == pytest.approx(datasets.ADDING_BASELINE_MSE, rel=0.02)


def test_adding_problem_rejects_bad_sizes():
    with pytest.raises(ValueError, match="length"):
        datasets.adding_problem(10, 1)
    with pytest.raises(TypeError, match="n_samples"):
        datasets.adding_problem(2.5, 10)


def test_copy_memory_layout():
    X, Y = datasets.copy_memory(50, delay=7, copy_length=4, n_symbols=5, random_state=0)
    T = 7 + 8
    assert X.shape == Y.shape == (50, T)
    symbols = X[:, :4]
    assert symbols.min() >= 1 and symbols.max() <= 5
    assert np.all(X[:, 4 + 7 - 1] == 6)                   # the "go" marker
    assert not X[:, 4:4 + 6].any() and not X[:, 4 + 7:].any()
    assert not Y[:, :11].any()
    np.testing.assert_array_equal(Y[:, 11:], symbols)
    assert datasets.copy_memory_baseline(7, 4, 5) == pytest.approx(4 * math.log(5))


def test_char_corpus_round_trip_and_errors():
    c = datasets.CharCorpus("hello world\n")
    assert c.chars == "\n dehlorw"
    assert c.vocab_size == len(set("hello world\n"))
    assert c.decode(c.ids) == "hello world\n"
    assert c.decode(c.encode("low")) == "low"
    with pytest.raises(ValueError, match="not in the corpus alphabet: 'ayz'"):
        c.encode("lazy")
    train, valid = c.split(0.25)
    assert train.text + valid.text == c.text and train.chars == valid.chars == c.chars
    assert c.encode("").shape == (0,)
    uni = datasets.CharCorpus("naïve 🙂 café")
    assert uni.decode(uni.ids) == "naïve 🙂 café"


def test_text_corpus_reads_any_file(tmp_path):
    p = tmp_path / "t.txt"
    p.write_bytes(b"line one\r\nline two\r\n\xff end")
    c = datasets.text_corpus(p)
    assert c.text == "line one\nline two\n\ufffd end"
    assert datasets.text_corpus(p, lowercase=True, max_chars=4).text == "line"
    empty = tmp_path / "e.txt"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty"):
        datasets.text_corpus(empty)
    with pytest.raises(FileNotFoundError):
        datasets.text_corpus(tmp_path / "missing.txt")


def test_python_docs_text_is_real_english():
    text = datasets.python_docs_text()
    assert len(text) > 10_000
    assert text.count(" the ") > 100
    assert len(datasets.python_docs_text(500)) == 500


def test_pad_sequences():
    padded, lengths = datasets.pad_sequences([np.ones((2, 3)), np.ones((4, 3)), np.ones((0, 3))], value=-1)
    assert padded.shape == (3, 4, 3)
    np.testing.assert_array_equal(lengths, [2, 4, 0])
    assert np.all(padded[0, 2:] == -1) and np.all(padded[1] == 1)
    with pytest.raises(ValueError, match=r"sequences\[1\]"):
        datasets.pad_sequences([np.ones((2, 3)), np.ones((2, 4))])
    with pytest.raises(ValueError, match="at least one"):
        datasets.pad_sequences([])
