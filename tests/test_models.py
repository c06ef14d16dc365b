"""The estimators: whole-model gradients, learning small tasks to fixed thresholds with fixed seeds,
scikit-learn compatibility, save / load, and the refusal of bad inputs."""
import numpy as np
import pytest

from fastrnn import datasets, models
from fastrnn.models import (CharLanguageModel, NotFittedError, Seq2Seq, SequenceClassifier,
                            SequenceRegressor, SequenceTagger)

from conftest import BACKENDS, rel_err
from test_blocks import GRAD_TOL, numeric_grad, sample_entries

ESTIMATORS = [SequenceClassifier, SequenceRegressor, SequenceTagger, CharLanguageModel, Seq2Seq]


# ---- data for the tasks ---------------------------------------------------------------------------

def first_token_task(n, seed):
    """Variable-length token sequences (3..12 ids from 0..4); the label is the first token: the
    network must carry it to the end."""
    rng = np.random.default_rng(seed)
    X = [rng.integers(0, 5, rng.integers(3, 13)) for _ in range(n)]
    return X, np.array([x[0] for x in X])


def reverse_task(n, seed, alphabet="abcde", lo=2, hi=7):
    rng = np.random.default_rng(seed)
    src = ["".join(rng.choice(list(alphabet), rng.integers(lo, hi))) for _ in range(n)]
    return src, [s[::-1] for s in src]


def small_text():
    return datasets.python_docs_text(40_000)


# ---- gradients of whole estimators -----------------------------------------------------------------

def check_estimator_gradients(est, data, make_batch, rng, k=8):
    """Every parameter block of a built estimator: analytic gradients of _batch_loss against central
    differences (float64)."""
    est._set_training(True)
    est._zero_grad()
    est._batch_loss(data, make_batch(), backward=True)
    analytic = {(n, p): b.grads[p].copy() for n, b in est._blocks_.items() for p in b.grads}

    def f():
        return est._batch_loss(data, make_batch(), backward=False)[0]

    checked = 0
    for name, block in est._blocks_.items():
        for pname, p in block.parameters().items():
            entries = sample_entries(p.size, rng, k)
            num = numeric_grad(f, p, eps=1e-5, entries=entries)
            ana = analytic[(name, pname)].reshape(-1)[entries]
            assert rel_err(ana, num) < GRAD_TOL, f"{name}.{pname}: {rel_err(ana, num):.2e}"
            checked += 1
    assert checked >= 4


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_classifier_gradient_bidirectional_tokens(backend, cell):
    X, y = first_token_task(6, 0)
    est = SequenceClassifier(cell=cell, hidden_size=4, num_layers=2, bidirectional=True, embedding_dim=3,
                             max_epochs=0, dtype=np.float64, random_state=0, backend=backend).fit(X, y)
    data = est._make_data(X, y, fit=False)
    check_estimator_gradients(est, data, lambda: np.arange(6), np.random.default_rng(0))


def test_regressor_gradient_features():
    X, y = datasets.adding_problem(5, 7, random_state=0, dtype=np.float64)
    est = SequenceRegressor(hidden_size=5, max_epochs=0, dtype=np.float64, random_state=0).fit(X, y)
    check_estimator_gradients(est, est._make_data(X, y, fit=False), lambda: np.arange(5),
                              np.random.default_rng(1))


def test_tagger_gradient_variable_lengths():
    rng = np.random.default_rng(0)
    X = [rng.standard_normal((n, 3)) for n in (5, 2, 4)]
    Y = [rng.integers(0, 3, len(x)) for x in X]
    est = SequenceTagger(hidden_size=4, bidirectional=True, max_epochs=0, dtype=np.float64,
                         random_state=0).fit(X, Y)
    check_estimator_gradients(est, est._make_data(X, Y, fit=False), lambda: np.arange(3), rng)


def test_language_model_gradient_with_carried_state():
    text = "the cat sat on the mat; the rat ate the hat. " * 3
    est = CharLanguageModel(hidden_size=6, embedding_dim=3, seq_length=7, batch_size=3, max_epochs=0,
                            dtype=np.float64, random_state=0).fit(text)
    data = est._make_data(text)
    x, y, carry = next(est._batches(data, np.random.default_rng(0), False))
    h0 = np.random.default_rng(1).standard_normal((1, x.shape[1], 6)) * 0.5   # the previous chunk's state
    check_estimator_gradients(est, data, lambda: (x, y, [h0]), np.random.default_rng(2))


@pytest.mark.parametrize("attention, bidirectional", [(True, True), (False, False), (True, False)])
def test_seq2seq_gradient(attention, bidirectional):
    src, tgt = reverse_task(4, 0)
    est = Seq2Seq(hidden_size=4, embedding_dim=3, num_layers=2 if bidirectional else 1, attention=attention,
                  bidirectional=bidirectional, max_epochs=0, dtype=np.float64, random_state=0).fit(src, tgt)
    check_estimator_gradients(est, est._make_data(src, tgt, fit=False), lambda: np.arange(4),
                              np.random.default_rng(3))


# ---- each estimator learns a small task -------------------------------------------------------------

def test_classifier_learns_variable_length_token_task():
    X, y = first_token_task(1500, 0)
    Xt, yt = first_token_task(300, 1)
    clf = SequenceClassifier(max_epochs=8, random_state=0).fit(X, y)
    assert clf.score(Xt, yt) >= 0.95
    proba = clf.predict_proba(Xt)
    assert proba.shape == (300, 5)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(axis=1)], clf.predict(Xt))


def test_classifier_learns_digits_as_sequences():
    sk = pytest.importorskip("sklearn.datasets")
    d = sk.load_digits()
    X, y = d.images, d.target          # 8 steps (rows) of 8 features: many-to-one
    rng = np.random.default_rng(0)
    order = rng.permutation(len(X))
    train, test = order[:1300], order[1300:]
    clf = SequenceClassifier(max_epochs=12, random_state=0).fit(X[train], y[train])
    assert clf.score(X[test], y[test]) >= 0.93


def test_classifier_one_to_one_on_2d_features():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 2))
    y = np.where(X[:, 0] * X[:, 1] > 0, "same", "diff")          # XOR-like: needs the hidden layer
    clf = SequenceClassifier(max_epochs=40, random_state=0).fit(X[:300], y[:300])
    assert clf.score(X[300:], y[300:]) >= 0.9
    assert set(clf.classes_) == {"same", "diff"}


def test_regressor_learns_adding_problem():
    X, y = datasets.adding_problem(3000, 10, random_state=0)
    Xt, yt = datasets.adding_problem(500, 10, random_state=1)
    reg = SequenceRegressor(max_epochs=10, learning_rate=1e-2, random_state=0).fit(X, y)
    mse = np.mean((reg.predict(Xt) - yt) ** 2)
    assert mse < 0.1 * datasets.ADDING_BASELINE_MSE
    assert reg.score(Xt, yt) > 0.9
    assert reg.predict(Xt).shape == (500,)


def test_regressor_multi_output_and_list_input():
    rng = np.random.default_rng(0)
    X = [rng.standard_normal((int(n), 1)) for n in rng.integers(1, 8, 600)]
    y = np.array([[x.sum(), x.max()] for x in X])
    reg = SequenceRegressor(max_epochs=25, random_state=0).fit(X[:500], y[:500])
    assert reg.predict(X[500:]).shape == (100, 2)
    assert reg.score(X[500:], y[500:]) > 0.9


def test_tagger_learns_copy_memory():
    X, Y = datasets.copy_memory(2000, delay=5, copy_length=3, n_symbols=4, random_state=0)
    Xt, Yt = datasets.copy_memory(300, delay=5, copy_length=3, n_symbols=4, random_state=1)
    tagger = SequenceTagger(max_epochs=15, learning_rate=1e-2, random_state=0).fit(X, Y)
    pred = tagger.predict(Xt)
    assert pred.shape == Yt.shape
    copy = slice(5 + 3, None)                       # the steps that recall the symbols
    assert np.mean(pred[:, copy] == Yt[:, copy]) >= 0.9
    assert tagger.score(Xt, Yt) >= 0.95


def test_tagger_list_labels_and_bidirectional():
    """Label each character by whether the next one is the same: needs the right context."""
    rng = np.random.default_rng(0)
    X = ["".join(rng.choice(list("ab"), rng.integers(2, 10))) for _ in range(800)]
    Y = [[("same" if i + 1 < len(s) and s[i + 1] == c else "diff") for i, c in enumerate(s)] for s in X]
    tagger = SequenceTagger(bidirectional=True, hidden_size=32, max_epochs=10, learning_rate=1e-2,
                            random_state=0).fit(X[:600], Y[:600])
    assert tagger.score(X[600:], Y[600:]) >= 0.95
    pred = tagger.predict(X[600:605])
    assert [len(p) for p in pred] == [len(s) for s in X[600:605]]
    probs = tagger.predict_proba(X[600:602])
    assert probs[0].shape == (len(X[600]), 2)


def test_language_model_learns_a_real_text_and_generates():
    text = small_text()
    train, held_out = text[:36_000], text[36_000:]
    held_out = "".join(c for c in held_out if c in set(train))
    lm = CharLanguageModel(hidden_size=128, max_epochs=6, learning_rate=1e-2, random_state=0).fit(train)
    freq = np.bincount(lm.corpus_.encode(train), minlength=len(lm.chars_)) / len(train)
    unigram = -np.sum(freq * np.log(np.maximum(freq, 1e-12)))   # what a memoryless model gets
    nll = -lm.score(held_out)
    assert nll < unigram - 1.0                                   # nats per character
    assert lm.loss_curve_[-1] < lm.loss_curve_[0]
    sample = lm.generate(300, prompt="The ", temperature=0.7, random_state=0)
    assert len(sample) == 300 and set(sample) <= set(lm.chars_)
    assert sample == lm.generate(300, prompt="The ", temperature=0.7, random_state=0)
    assert sample != lm.generate(300, prompt="The ", temperature=0.7, random_state=1)
    assert " the " in lm.generate(400, prompt="The ", temperature=0.5, random_state=0)
    greedy = lm.generate(50, prompt="The ", temperature=0)
    assert greedy == lm.generate(50, prompt="The ", temperature=0, random_state=123)
    assert len(lm.generate(20)) == 20                             # no prompt
    assert lm.predict_proba("the").shape == (3, len(lm.chars_))
    assert len(lm.predict("the ")) == 4
    assert lm.perplexity(held_out) == pytest.approx(np.exp(nll))


def test_seq2seq_learns_variable_length_reversal():
    src, tgt = reverse_task(3000, 0)
    src_t, tgt_t = reverse_task(300, 1)
    model = Seq2Seq(hidden_size=64, max_epochs=8, learning_rate=1e-2, random_state=0).fit(src, tgt)
    assert model.score(src_t, tgt_t) >= 0.9
    pred = model.predict(src_t[:5])
    assert all(isinstance(p, str) for p in pred)
    assert len(model.predict(["abc"], max_length=2)[0]) <= 2


def test_seq2seq_token_lists_to_token_lists():
    """Sources as id sequences, targets as lists of word tokens: number -> its digits' names."""
    names = np.array(["zero", "one", "two", "three", "four"])
    rng = np.random.default_rng(0)
    src = [rng.integers(0, 5, rng.integers(1, 5)) for _ in range(1500)]
    tgt = [list(names[s]) + ["end"] if len(s) > 2 else list(names[s]) for s in src]
    model = Seq2Seq(hidden_size=64, max_epochs=10, learning_rate=1e-2, random_state=0).fit(src[:1200], tgt[:1200])
    assert model.score(src[1200:], tgt[1200:]) >= 0.9
    out = model.predict(src[1200:1201])[0]
    assert isinstance(out, np.ndarray) and out.dtype.kind == "U"


# ---- scikit-learn compatibility ----------------------------------------------------------------------

@pytest.mark.parametrize("cls", ESTIMATORS)
def test_get_set_params_without_sklearn(cls):
    est = cls(hidden_size=7, random_state=3)
    params = est.get_params()
    assert params["hidden_size"] == 7 and params["random_state"] == 3 and params["cell"] == "gru"
    again = cls(**params)
    assert again.get_params() == params
    assert est.set_params(hidden_size=9, cell="rnn") is est and est.hidden_size == 9
    with pytest.raises(ValueError, match="Invalid parameter 'hiden_size'"):
        est.set_params(hiden_size=3)
    assert "hidden_size=9" in repr(est)


def test_sklearn_clone_and_cross_val_score():
    pytest.importorskip("sklearn")
    from sklearn.base import clone, is_classifier, is_regressor
    from sklearn.datasets import load_digits
    from sklearn.model_selection import GridSearchCV, cross_val_score

    clf = SequenceClassifier(max_epochs=10, random_state=0)
    c2 = clone(clf)
    assert c2 is not clf and c2.get_params() == clf.get_params()
    assert is_classifier(clf) and is_regressor(SequenceRegressor())
    d = load_digits()
    scores = cross_val_score(clf, d.images[:600], d.target[:600], cv=3)
    assert scores.shape == (3,) and scores.mean() > 0.8
    X, y = datasets.adding_problem(300, 8, random_state=0)
    scores = cross_val_score(SequenceRegressor(max_epochs=2, random_state=0), X, y, cv=2)
    assert np.all(np.isfinite(scores))
    Xl, yl = first_token_task(200, 0)          # a list of variable-length sequences, indexed by sklearn
    grid = GridSearchCV(SequenceClassifier(max_epochs=2, random_state=0), {"hidden_size": [8, 16]}, cv=2)
    grid.fit(Xl, yl)
    assert grid.best_params_["hidden_size"] in (8, 16)


def test_reproducible_with_random_state():
    X, y = first_token_task(200, 0)
    a = SequenceClassifier(max_epochs=2, random_state=5).fit(X, y).predict_proba(X)
    b = SequenceClassifier(max_epochs=2, random_state=5).fit(X, y).predict_proba(X)
    c = SequenceClassifier(max_epochs=2, random_state=6).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_backends_agree():
    if "c" not in BACKENDS:
        pytest.skip("compiled backend not built")
    X, y = first_token_task(100, 0)
    kw = dict(max_epochs=2, random_state=0, dtype=np.float64, bidirectional=True)
    a = SequenceClassifier(backend="numpy", **kw).fit(X, y).predict_proba(X)
    b = SequenceClassifier(backend="c", **kw).fit(X, y).predict_proba(X)
    assert rel_err(b, a) < 1e-8


def test_lengths_are_honoured():
    """A sequence's prediction does not depend on the other sequences of its batch (padding)."""
    X, y = first_token_task(300, 0)
    clf = SequenceClassifier(max_epochs=1, bidirectional=True, random_state=0).fit(X, y)
    together = clf.predict_proba(X[:20])
    alone = np.concatenate([clf.predict_proba([x]) for x in X[:20]])
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-6)
    tagger = SequenceTagger(max_epochs=1, bidirectional=True, random_state=0).fit(X, [x % 2 for x in X])
    together = tagger.predict_proba(X[:10])
    for x, p in zip(X[:10], together):
        np.testing.assert_allclose(p, tagger.predict_proba([x])[0], rtol=1e-5, atol=1e-6)


def test_partial_fit_and_warm_start():
    X, y = datasets.adding_problem(500, 6, random_state=0)
    reg = SequenceRegressor(random_state=0)
    for i in range(3):
        reg.partial_fit(X, y)
    assert len(reg.loss_curve_) == 3 and reg.loss_curve_[-1] < reg.loss_curve_[0]
    clf = SequenceClassifier(max_epochs=2, warm_start=True, random_state=0)
    Xc, yc = first_token_task(200, 0)
    clf.fit(Xc, yc)
    w = clf._blocks_["head"].parameters()["weight"].copy()
    clf.fit(Xc, yc)
    assert len(clf.loss_curve_) == 4                     # continued, not restarted
    assert not np.array_equal(w, clf._blocks_["head"].parameters()["weight"])
    clf2 = SequenceClassifier(random_state=0)
    clf2.partial_fit(Xc[:50], yc[:50], classes=np.arange(6))
    assert list(clf2.classes_) == list(range(6))


def test_early_stopping_keeps_the_best_weights():
    X, y = first_token_task(400, 0)
    clf = SequenceClassifier(max_epochs=30, early_stopping=True, n_iter_no_change=2, random_state=0).fit(X, y)
    assert len(clf.validation_loss_curve_) == len(clf.loss_curve_) <= 30
    assert clf.best_validation_loss_ == pytest.approx(min(clf.validation_loss_curve_))


def test_verbose_progress_bar(capsys):
    X, y = first_token_task(100, 0)
    SequenceClassifier(max_epochs=2, verbose=1, random_state=0).fit(X, y)
    err = capsys.readouterr().err
    assert "SequenceClassifier epoch 2/2" in err and "loss" in err and "seq/s" in err and "steps/s" in err
    SequenceClassifier(max_epochs=1, random_state=0).fit(X, y)
    assert capsys.readouterr().err == ""


# ---- save / load --------------------------------------------------------------------------------------

def fitted_examples():
    Xc, yc = first_token_task(60, 0)
    Xf, yf = datasets.adding_problem(60, 5, random_state=0)
    src, tgt = reverse_task(60, 0)
    text = small_text()[:3000]
    return [
        (SequenceClassifier(max_epochs=1, bidirectional=True, random_state=0).fit(Xc, np.array(["a", "b", "c", "d", "e"])[yc]),
         lambda m: m.predict_proba(Xc)),
        (SequenceRegressor(max_epochs=1, cell="rnn", num_layers=2, random_state=0).fit(Xf, yf),
         lambda m: m.predict(Xf)),
        (SequenceTagger(max_epochs=1, random_state=0).fit(src, [list(t) for t in tgt]),
         lambda m: np.concatenate(m.predict_proba(src))),
        (CharLanguageModel(hidden_size=16, max_epochs=1, random_state=0).fit(text),
         lambda m: (m.predict_proba("the"), m.generate(30, "a", random_state=0))),
        (Seq2Seq(hidden_size=16, max_epochs=1, bidirectional=True, random_state=0, dtype=np.float64).fit(src, tgt),
         lambda m: m.predict(src, max_length=8)),
    ]


def test_save_load_round_trips(tmp_path):
    for est, probe in fitted_examples():
        path = tmp_path / f"{type(est).__name__}.npz"
        est.save(path)
        loaded = type(est).load(path)
        assert type(loaded) is type(est)
        assert loaded.get_params() == est.get_params()
        a, b = probe(est), probe(loaded)
        if isinstance(a, tuple):
            np.testing.assert_array_equal(a[0], b[0])
            assert a[1] == b[1]
        elif isinstance(a, list):
            assert a == b
        else:
            np.testing.assert_array_equal(a, b)
        assert type(models.load(path)) is type(est)
        with np.load(path, allow_pickle=False) as f:       # plain arrays, no pickled code
            assert "__meta__" in f.files


def test_load_refuses_other_files(tmp_path):
    p = tmp_path / "x.npz"
    np.savez(p, a=np.zeros(3))
    with pytest.raises(ValueError, match="not a fastrnn model"):
        models.load(p)
    est, _ = fitted_examples()[1]
    est.save(tmp_path / "r.npz")
    with pytest.raises(ValueError, match="holds a SequenceRegressor"):
        SequenceClassifier.load(tmp_path / "r.npz")


# ---- bad inputs ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", ESTIMATORS)
def test_not_fitted(cls, tmp_path):
    est = cls()
    with pytest.raises(NotFittedError, match="not fitted"):
        est.save(tmp_path / "m.npz")
    if cls is CharLanguageModel:
        calls = [lambda: est.generate(5), lambda: est.score("abc"), lambda: est.predict_proba("ab")]
    elif cls is Seq2Seq:
        calls = [lambda: est.predict(["ab"]), lambda: est.score(["ab"], ["ba"])]
    else:
        X = np.zeros((2, 3, 1))
        calls = [lambda: est.predict(X), lambda: est.score(X, [0, 1])]
        if cls is not SequenceRegressor:
            calls.append(lambda: est.predict_proba(X))
    for call in calls:
        with pytest.raises(NotFittedError, match="not fitted"):
            call()


def test_bad_inputs_get_clear_errors():
    clf = SequenceClassifier(max_epochs=1)
    with pytest.raises(ValueError, match="empty data"):
        clf.fit([], [])
    with pytest.raises(ValueError, match="empty data"):
        clf.fit(np.zeros((0, 5, 2)), np.zeros(0))
    with pytest.raises(ValueError, match=r"X\[1\]: has 3 features per step, but X\[0\] has 2"):
        clf.fit([np.zeros((4, 2)), np.zeros((3, 3))], [0, 1])
    with pytest.raises(ValueError, match=r"X\[1\]: ragged"):
        clf.fit([[[1.0, 2.0]], [[1.0], [2.0, 3.0]]], [0, 1])
    with pytest.raises(ValueError, match=r"X\[1\]: has 1 features per step"):
        clf.fit(np.array([np.zeros((2, 2)), np.zeros((3, 1))], dtype=object), [0, 1])
    with pytest.raises(ValueError, match=r"expected a 3-D array"):
        clf.fit(np.zeros(5), np.zeros(5))
    with pytest.raises(TypeError, match="single str"):
        clf.fit("abc", [0])
    with pytest.raises(ValueError, match="expected 3 targets"):
        clf.fit(np.zeros((3, 4, 2)), [0, 1])
    with pytest.raises(ValueError, match="at least 2 classes"):
        clf.fit(np.zeros((3, 4, 2)), [1, 1, 1])
    with pytest.raises(ValueError, match="mixed sequence kinds"):
        clf.fit([np.zeros((2, 2)), [1, 2]], [0, 1])
    with pytest.raises(ValueError, match="NaN"):
        clf.fit(np.full((2, 3, 1), np.nan), [0, 1])
    with pytest.raises(ValueError, match="cell"):
        SequenceClassifier(cell="lstm").fit(np.zeros((2, 3, 1)), [0, 1])
    with pytest.raises(ValueError, match="hidden_size"):
        SequenceClassifier(hidden_size=0).fit(np.zeros((2, 3, 1)), [0, 1])
    with pytest.raises(ValueError, match="learning_rate"):
        SequenceRegressor(learning_rate=-1).fit(np.zeros((2, 3, 1)), [0, 1])

    X, y = first_token_task(50, 0)
    clf = SequenceClassifier(max_epochs=1, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match=r"token id 9 out of range \[0, 5\)"):
        clf.predict([np.array([1, 9])])
    with pytest.raises(ValueError, match="got features sequences, but the estimator was fitted on ids"):
        clf.predict(np.zeros((2, 3, 1)))
    with pytest.raises(ValueError, match="label 7 is not one of the classes"):
        clf.partial_fit(X[:2], [0, 7])
    reg = SequenceRegressor(max_epochs=1).fit(np.zeros((4, 3, 2)), [0.0, 1, 2, 3])
    with pytest.raises(ValueError, match="expected 2 features per step"):
        reg.predict(np.zeros((1, 3, 5)))


def test_bad_targets_for_sequence_outputs():
    tagger = SequenceTagger(max_epochs=1)
    with pytest.raises(ValueError, match=r"y\[1\]: expected 2 labels"):
        tagger.fit(["abc", "de"], ["xyz", "xyz"])
    with pytest.raises(ValueError, match="y: expected 2 targets"):
        tagger.fit(["abc", "de"], ["xyz"])
    s2s = Seq2Seq(max_epochs=1)
    with pytest.raises(ValueError, match="targets: expected 2 targets"):
        s2s.fit(["ab", "cd"], ["ba"])
    with pytest.raises(ValueError, match="every target sequence is empty"):
        s2s.fit(["ab", "cd"], ["", ""])
    lm = CharLanguageModel(max_epochs=1)
    with pytest.raises(ValueError, match="empty data"):
        lm.fit("")
    with pytest.raises(TypeError, match="expected a str"):
        lm.fit(123)
    lm = CharLanguageModel(hidden_size=8, max_epochs=1, random_state=0).fit("abcabcabd")
    with pytest.raises(ValueError, match="'z'"):
        lm.generate(5, prompt="az")
    with pytest.raises(ValueError, match="temperature"):
        lm.generate(5, temperature=-1)
    with pytest.raises(ValueError, match="n_chars"):
        lm.generate(-5)
    with pytest.raises(ValueError, match="seq_length"):
        CharLanguageModel(seq_length=0).fit("abc")


def test_unknown_tokens_share_one_id_at_predict_time():
    src, tgt = reverse_task(100, 0)
    model = Seq2Seq(hidden_size=8, max_epochs=1, random_state=0).fit(src, tgt)
    assert isinstance(model.predict(["xyz"])[0], str)         # unseen characters: no error


def test_weight_decay_spares_recurrent_weights_and_biases():
    X, y = first_token_task(20, 0)
    est = SequenceClassifier(max_epochs=0, weight_decay=0.1, num_layers=2, random_state=0).fit(X, y)
    decayed = {id(p) for p, _ in est._decayed()}
    names = []
    for block_name, block in est._blocks_.items():
        for name, p in block.parameters().items():
            if id(p) in decayed:
                names.append(f"{block_name}.{name}")
    assert sorted(names) == ["embedding.weight", "head.weight", "rnn.weight_ih_l0", "rnn.weight_ih_l1"]


def test_predict_runs_under_no_grad():
    """Prediction is inference: the recurrent layer keeps nothing for a backward (fastrnn.no_grad), and
    the caller's gradient mode is left as it was."""
    import fastrnn

    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 6, 3)).astype(np.float32)
    y = (X[:, :, 0].sum(axis=1) > 0).astype(int)
    clf = SequenceClassifier(hidden_size=8, max_epochs=2, random_state=0).fit(X, y)
    assert clf._blocks_["rnn"]._ctx != "no_grad"      # the last training step kept its cache
    clf.predict_proba(X)
    assert clf._blocks_["rnn"]._ctx == "no_grad"
    assert fastrnn.is_grad_enabled()
