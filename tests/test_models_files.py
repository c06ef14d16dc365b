"""Loading model files defensively: every malformed or tampered .npz written by `save` raises one
ValueError that starts with the path and names what is wrong; an untampered file round-trips."""
import json
import re
import zipfile

import numpy as np
import pytest

from fastrnn import datasets, models
from fastrnn.models import CharLanguageModel, Seq2Seq, SequenceClassifier, SequenceRegressor, SequenceTagger


def _fit_examples():
    rng = np.random.default_rng(0)
    ids = [rng.integers(0, 5, rng.integers(3, 8)) for _ in range(30)]
    Xf, yf = datasets.adding_problem(30, 5, random_state=0)
    src = ["".join(rng.choice(list("abcde"), rng.integers(2, 6))) for _ in range(30)]
    tgt = [s[::-1] for s in src]
    small = dict(hidden_size=8, embedding_dim=4, max_epochs=1, random_state=0)
    return {   # family: (fitted estimator, what predict gives)
        "clf": (SequenceClassifier(bidirectional=True, **small).fit(ids, np.array(list("abcde"))[[x[0] for x in ids]]),
                lambda m: m.predict_proba(ids)),
        "reg": (SequenceRegressor(cell="rnn", num_layers=2, **small).fit(Xf, yf), lambda m: m.predict(Xf)),
        "tag": (SequenceTagger(**small).fit(src, [list(t) for t in tgt]),
                lambda m: np.concatenate(m.predict_proba(src))),
        "lm": (CharLanguageModel(**small).fit("the cat sat on the mat. " * 20),
               lambda m: (m.predict_proba("the"), m.generate(20, "", random_state=0))),
        "s2s": (Seq2Seq(bidirectional=True, dtype=np.float64, **small).fit(src, tgt),
                lambda m: m.predict(src, max_length=8)),
    }


FAMILIES = ["clf", "reg", "tag", "lm", "s2s"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """family -> (path of the saved file, estimator, probe)"""
    d = tmp_path_factory.mktemp("models")
    out = {}
    for fam, (est, probe) in _fit_examples().items():
        est.save(d / f"{fam}.npz")
        out[fam] = (d / f"{fam}.npz", est, probe)
    return out


def tamper(src, dst, edit):
    """Rewrite the model file `src` as `dst` after `edit(arrays, meta)` (both dicts, edited in place;
    meta is written back as __meta__ unless edit replaced or removed that entry)."""
    with np.load(src) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays["__meta__"]))
    before = arrays["__meta__"]
    edit(arrays, meta)
    if arrays.get("__meta__") is before:
        arrays["__meta__"] = np.array(json.dumps(meta))
    np.savez(dst, **arrays)
    return dst


def refuses(path, message, load=models.load):
    with pytest.raises(ValueError, match="^" + re.escape(str(path)) + ": " + message):
        load(path)


# ---- an untampered file -----------------------------------------------------------------------------

@pytest.mark.parametrize("fam", FAMILIES)
def test_untampered_round_trips(saved, fam, tmp_path):
    path, est, probe = saved[fam]
    for loaded in (models.load(path), type(est).load(tamper(path, tmp_path / "same.npz", lambda a, m: None))):
        assert type(loaded) is type(est) and loaded.get_params() == est.get_params()
        assert loaded.loss_curve_ == est.loss_curve_
        a, b = probe(est), probe(loaded)
        if isinstance(a, tuple):
            np.testing.assert_array_equal(a[0], b[0])
            assert a[1] == b[1]
        elif isinstance(a, list):
            assert all(np.array_equal(x, y) for x, y in zip(a, b)) and len(a) == len(b)
        else:
            np.testing.assert_array_equal(a, b)


# ---- files that are not model files ----------------------------------------------------------------

def _raw_zip(p):
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("__meta__", '{"format": 1}')      # a member that is not a .npy array


@pytest.mark.parametrize("write, message", [
    (lambda p: p.write_bytes(b"hello, not a zip"), "not a NumPy .npz file"),
    (lambda p: p.write_bytes(b""), "not a NumPy .npz file"),
    (lambda p: p.write_bytes(b"PK\x03\x04 truncated"), "not a NumPy .npz file"),
    (lambda p: np.save(p.open("wb"), np.zeros(3)), r"not a NumPy .npz file \(a single .npy array\)"),
    (lambda p: np.savez(p, a=np.zeros(3)), r"not a fastrnn model file \(no __meta__ entry\)"),
    (_raw_zip, "__meta__: not a NumPy array"),
], ids=["text", "empty", "truncated-zip", "npy", "no-meta", "raw-zip-member"])
def test_not_a_model_file(tmp_path, write, message):
    p = tmp_path / "m.npz"
    write(p)
    refuses(p, message)


# ---- __meta__, params and loss_curve: the same for every family -------------------------------------

def _meta(where=None, **changes):
    """An edit of __meta__ (or of its `where` dict, "params"): keys set to values, or removed (None)."""
    def edit(arrays, meta):
        d = meta[where] if where else meta
        for k, v in changes.items():
            if v is None:
                del d[k]
            else:
                d[k] = v
    return edit


def _param(**changes):
    return _meta("params", **changes)


def _set(key, value):
    def edit(arrays, meta):
        arrays[key] = value
    return edit


def _drop(key):
    def edit(arrays, meta):
        del arrays[key]
    return edit


def _map(key, f):
    def edit(arrays, meta):
        arrays[key] = f(arrays[key])
    return edit


META_CASES = {
    "meta-missing": (_drop("__meta__"), r"not a fastrnn model file"),
    "meta-not-str": (_set("__meta__", np.array(3)), "__meta__: expected a JSON string"),
    "meta-array-of-str": (_set("__meta__", np.array(["{}", "{}"])), "__meta__: expected a JSON string"),
    "meta-bad-json": (_set("__meta__", np.array("{not json")), "__meta__ is not valid JSON"),
    "meta-not-dict": (_set("__meta__", np.array("[1, 2]")), "__meta__: expected a JSON object, got list"),
    "meta-extra-key": (_meta(note="hi"), r"__meta__: unexpected keys \['note'\]"),
    "format-missing": (_meta(format=None), "format missing"),
    "format-wrong": (_meta(format=2), "unsupported model format 2"),
    "format-bool": (_meta(format=True), "unsupported model format True"),
    "class-missing": (_meta(**{"class": None}), "class missing"),
    "class-unknown": (_meta(**{"class": "Foo"}), "class: unknown estimator 'Foo'"),
    "class-not-str": (_meta(**{"class": ["SequenceClassifier"]}), r"class: unknown estimator \['Seq"),
    "params-missing": (_meta(params=None), "params missing"),
    "params-not-dict": (_meta(params=[1, 2]), "params: expected a JSON object, got list"),
    "param-unknown": (_param(colour="red"), r"params: unknown \['colour'\]"),
    "param-missing": (_param(hidden_size=None), r"params: missing \['hidden_size'\]"),
    "hidden-size-negative": (_param(hidden_size=-1), "params: hidden_size: expected an int >= 1, got -1"),
    "hidden-size-float": (_param(hidden_size=8.0), "params: hidden_size: expected an int"),
    "cell-unknown": (_param(cell="lstm"), "params: cell: expected 'gru' or 'rnn'"),
    "learning-rate-nan": (_param(learning_rate=float("nan")), "params: learning_rate: expected a number"),
    "dropout-str": (_param(dropout="0.5"), "params: dropout: expected a number"),
    "dtype-float16": (_param(dtype="float16"), "params: dtype: expected numpy.float32 or numpy.float64"),
    "dtype-list": (_param(dtype=[1]), "params: dtype: expected"),
    "backend-unknown": (_param(backend="cuda"), "params: backend: expected one of"),
    "random-state-str": (_param(random_state="x"), "params: random_state: "),
    "random-state-negative": (_param(random_state=-1), "params: random_state: "),
    "loss-curve-missing": (_meta(loss_curve=None), "loss_curve missing"),
    "loss-curve-not-list": (_meta(loss_curve="0.5"), "loss_curve: expected a list of finite numbers"),
    "loss-curve-nan": (_meta(loss_curve=[0.5, float("nan")]), "loss_curve: expected a list of finite numbers"),
    "loss-curve-str": (_meta(loss_curve=["0.5"]), "loss_curve: expected a list of finite numbers"),
    "loss-curve-bool": (_meta(loss_curve=[True]), "loss_curve: expected a list of finite numbers"),
    "loss-curve-huge-int": (_meta(loss_curve=[10 ** 400]), "loss_curve: expected a list of finite numbers"),
    "hidden-size-huge": (_param(hidden_size=10 ** 30), "params and state: cannot build the network"),
    "state-extra": (_set("state/secret_", np.array(1)), r"unexpected entries \['state/secret_'\]"),
    "entry-extra": (_set("junk", np.zeros(2)), r"unexpected entries \['junk'\]"),
    "param-extra": (_set("param/head/extra", np.zeros(2, np.float32)), r"unexpected entries \['param/head/extra'\]"),
    "param-block-extra": (_set("param/ghost/weight", np.zeros(2, np.float32)), r"unexpected entries \['param/ghost"),
    "param-dropped": (_drop("param/head/weight"), "param/head/weight: missing"),
    "param-nan": (_map("param/head/weight", lambda w: np.where(w == w.flat[0], np.nan, w)),
                  "param/head/weight: expected finite float(32|64) numbers, got NaN or infinity"),
    "param-inf": (_map("param/head/bias", lambda b: b + np.inf),
                  "param/head/bias: expected finite float(32|64) numbers, got NaN or infinity"),
    "param-int": (_map("param/head/bias", lambda b: b.astype(np.int64)),
                  "param/head/bias: expected finite float(32|64) numbers, got dtype int64"),
    "param-str": (_map("param/head/bias", lambda b: b.astype(str)),
                  "param/head/bias: expected finite float(32|64) numbers, got dtype <U"),
    "param-other-float": (_map("param/head/bias", lambda b: b.astype(np.float16)),
                          "param/head/bias: expected finite float(32|64) numbers, got dtype float16"),
    "param-float32-64": (_map("param/head/bias", lambda b: b.astype("f8" if b.dtype == "f4" else "f4")),
                         "param/head/bias: expected finite float(32|64) numbers, got dtype float(64|32)"),
    "param-shape": (_map("param/head/weight", lambda w: w[:-1]),
                    r"param/head/weight: expected shape \(\d+, \d+\)"),
    "param-2d": (_map("param/head/bias", lambda b: b[:, None]), r"param/head/bias: expected shape"),
    "param-object": (_set("param/head/bias", np.array([None, 1], dtype=object)),
                     "param/head/bias: cannot be read .*allow_pickle=False"),
    "meta-object": (_set("__meta__", np.array(["{}", None], dtype=object)), "__meta__: cannot be read"),
}


@pytest.mark.parametrize("case", list(META_CASES))
@pytest.mark.parametrize("fam", FAMILIES)
def test_tampered_meta_and_params(saved, tmp_path, fam, case):
    edit, message = META_CASES[case]
    refuses(tamper(saved[fam][0], tmp_path / "m.npz", edit), message)


def test_wrong_estimator_class(saved):
    refuses(saved["reg"][0], "holds a SequenceRegressor, not a SequenceClassifier", SequenceClassifier.load)


# ---- the fitted state of each family ---------------------------------------------------------------

SPEC = "state/input_spec_."
STATE_CASES = [
    # SequenceClassifier: token ids (input_spec_ "ids"), n_outputs_, string classes_
    ("clf", _drop("state/n_outputs_"), "state/n_outputs_: missing"),
    ("clf", _set("state/n_outputs_", np.array(-1)), "state/n_outputs_: expected a positive int, got -1"),
    ("clf", _set("state/n_outputs_", np.array(5.0)), "state/n_outputs_: expected an int, got dtype float64"),
    ("clf", _set("state/n_outputs_", np.array([5])), r"state/n_outputs_: expected a 0-D array, got shape \(1,\)"),
    ("clf", _set("state/n_outputs_", np.array(6)), r"state/classes_: expected 6 values, got 5"),
    ("clf", _drop("state/classes_"), "state/classes_: missing"),
    ("clf", _set("state/classes_", np.array([0, 1, 2, 3, np.nan])), "state/classes_: expected at least 2 sorted "
                                                                     "distinct values without NaN"),
    ("clf", _set("state/classes_", np.array(list("aacde"))), "state/classes_: expected .* sorted distinct"),
    ("clf", _set("state/classes_", np.array(list("edcba"))), "state/classes_: expected .* sorted distinct"),
    ("clf", _set("state/classes_", np.array([list("abcde")])), "state/classes_: expected a 1-D array"),
    ("clf", _set("state/classes_", np.array(["abc", None], dtype=object)), "state/classes_: cannot be read"),
    ("clf", _drop(SPEC + "kind"), "state/input_spec_.kind: missing"),
    ("clf", _set(SPEC + "kind", np.array("pictures")), "state/input_spec_.kind: expected 'features', 'ids' or"),
    ("clf", _set(SPEC + "kind", np.array(3)), "state/input_spec_.kind: expected a str, got dtype int64"),
    ("clf", _set(SPEC + "n_tokens", np.array(-1)), "state/input_spec_.n_tokens: expected a positive int, got -1"),
    ("clf", _set(SPEC + "n_tokens", np.array(0)), "state/input_spec_.n_tokens: expected a positive int, got 0"),
    ("clf", _set(SPEC + "n_tokens", np.array(7)), r"param/embedding/weight: expected shape \(7, 4\)"),
    ("clf", _set(SPEC + "n_tokens", np.array(True)), "state/input_spec_.n_tokens: expected an int, got dtype bool"),
    ("clf", _set(SPEC + "n_features", np.array(3)), r"state/input_spec_.n_features: expected an int in \[0, 0\]"),
    ("clf", _drop(SPEC + "n_features"), "state/input_spec_.n_features: missing"),
    ("clf", _set(SPEC + "vocab", np.array(["a"])), r"unexpected entries \['state/input_spec_.vocab'\]"),
    ("clf", _set(SPEC + "mean", np.zeros(1)), r"unexpected entries \['state/input_spec_.mean'\]"),
    # SequenceRegressor: float features (standardised), y_mean_, y_scale_, y_ndim_
    ("reg", _set("state/y_mean_", np.array([np.nan])), "state/y_mean_: expected 1 finite numbers"),
    ("reg", _set("state/y_mean_", np.array([1])), "state/y_mean_: expected a float, got dtype int64"),
    ("reg", _set("state/y_mean_", np.zeros(2)), "state/y_mean_: expected 1 values, got 2"),
    ("reg", _set("state/y_scale_", np.array([0.0])), "state/y_scale_: expected 1 finite positive numbers"),
    ("reg", _set("state/y_scale_", np.array([-1.0])), "state/y_scale_: expected 1 finite positive numbers"),
    ("reg", _drop("state/y_scale_"), "state/y_scale_: missing"),
    ("reg", _set("state/y_ndim_", np.array(3)), r"state/y_ndim_: expected an int in \[1, 2\], got 3"),
    ("reg", _set("state/n_outputs_", np.array(2)), "state/y_mean_: expected 2 values, got 1"),
    ("reg", _set(SPEC + "n_features", np.array(0)), "state/input_spec_.n_features: expected a positive int"),
    ("reg", _set(SPEC + "n_features", np.array(3)), "state/input_spec_.mean: expected 3 values, got 2"),
    ("reg", _set(SPEC + "n_tokens", np.array(3)), r"state/input_spec_.n_tokens: expected an int in \[0, 0\]"),
    ("reg", _map(SPEC + "mean", lambda a: a * np.nan), "state/input_spec_.mean: expected 2 finite numbers"),
    ("reg", _map(SPEC + "mean", lambda a: a.astype(str)), "state/input_spec_.mean: expected a float, got dtype <U"),
    ("reg", _map(SPEC + "scale", lambda a: -a), "state/input_spec_.scale: expected 2 finite positive numbers"),
    ("reg", _map(SPEC + "scale", lambda a: a[:1]), "state/input_spec_.scale: expected 2 values, got 1"),
    ("reg", _drop(SPEC + "scale"), "state/input_spec_.scale: missing"),
    ("reg", _drop(SPEC + "mean"), r"unexpected entries \['state/input_spec_.scale'\]"),
    ("reg", _set(SPEC + "kind", np.array("ids")), r"state/input_spec_.n_features: expected an int in \[0, 0\], got 2"),
    # SequenceTagger: string tokens (a vocabulary), classes_ per step
    ("tag", _drop(SPEC + "vocab"), "state/input_spec_.vocab: missing"),
    ("tag", _map(SPEC + "vocab", lambda v: v[::-1]), "state/input_spec_.vocab: expected at least 0 sorted distinct"),
    ("tag", _map(SPEC + "vocab", lambda v: np.r_[v[:1], v[:-1]]), "state/input_spec_.vocab: expected .* distinct"),
    ("tag", _map(SPEC + "vocab", lambda v: v[:-1]), "state/input_spec_.vocab: expected 5 values, got 4"),
    ("tag", _map(SPEC + "vocab", lambda v: np.arange(len(v))), "state/input_spec_.vocab: expected a str, got dtype"),
    ("tag", _set(SPEC + "n_tokens", np.array(-1)), "state/input_spec_.n_tokens: expected a positive int, got -1"),
    ("tag", _map("state/classes_", lambda c: c[:1]), "state/classes_: expected at least 2 sorted distinct"),
    ("tag", _map("state/classes_", lambda c: c[:-1]), r"param/head/weight: expected shape \(4, 8\) .*got \(5, 8\)"),
    ("tag", _set(SPEC + "kind", np.array("features")), r"state/input_spec_.n_features: expected a positive int"),
    # CharLanguageModel: chars_, char_freq_
    ("lm", _drop("state/chars_"), "state/chars_: missing"),
    ("lm", _map("state/chars_", lambda s: np.array(str(s)[::-1])), "state/chars_: expected a str of sorted distinct"),
    ("lm", _set("state/chars_", np.array("")), "state/chars_: expected a str of sorted distinct"),
    ("lm", _map("state/chars_", lambda s: np.array(list(str(s)))), "state/chars_: expected a 0-D array"),
    ("lm", _map("state/chars_", lambda s: np.array(str(s) + "z")), "state/char_freq_: expected 12 values, got 11"),
    ("lm", _map("state/char_freq_", lambda f: f * 2), "state/char_freq_: expected 11 finite positive numbers summing"),
    ("lm", _map("state/char_freq_", lambda f: np.r_[f[1:] - 1, 1 + f[:1]]), "state/char_freq_: expected .* positive"),
    ("lm", _map("state/char_freq_", lambda f: f * np.nan), "state/char_freq_: expected 11 finite"),
    ("lm", _map("state/char_freq_", lambda f: f.astype(np.int64)), "state/char_freq_: expected a float"),
    ("lm", _set(SPEC + "kind", np.array("ids")), r"unexpected entries \['state/input_spec_.kind'\]"),
    # Seq2Seq (float64): string tokens in, target tokens out
    ("s2s", _set("state/target_tokens_", np.array([], dtype=str)), "state/target_tokens_: expected at least 1"),
    ("s2s", _map("state/target_tokens_", lambda t: t[::-1]), "state/target_tokens_: expected .* sorted distinct"),
    ("s2s", _map("state/target_tokens_", lambda t: t[:-1]), r"param/target_embedding/weight: expected shape \(5, 4\)"),
    ("s2s", _map("state/target_tokens_", lambda t: np.arange(len(t))),
     "state/target_is_str_: is True, but the target tokens are not strings"),
    ("s2s", _set("state/target_is_str_", np.array("yes")), "state/target_is_str_: expected a bool, got dtype <U3"),
    ("s2s", _set("state/target_is_str_", np.array(1)), "state/target_is_str_: expected a bool, got dtype int64"),
    ("s2s", _set("state/max_target_length_", np.array(0)), "state/max_target_length_: expected a positive int, got 0"),
    ("s2s", _drop("state/max_target_length_"), "state/max_target_length_: missing"),
    ("s2s", _map(SPEC + "vocab", lambda v: np.r_[v[:-1], [v[-2]]]), "state/input_spec_.vocab: expected .* distinct"),
    ("s2s", _set(SPEC + "n_tokens", np.array(-1)), "state/input_spec_.n_tokens: expected a positive int, got -1"),
]


@pytest.mark.parametrize("fam, edit, message", STATE_CASES,
                         ids=[f"{c[0]}-" + re.sub(r"\W+", "-", c[2][:48]) for c in STATE_CASES])
def test_tampered_fitted_state(saved, tmp_path, fam, edit, message):
    path, est, _ = saved[fam]
    refuses(tamper(path, tmp_path / "m.npz", edit), message, type(est).load)
