"""The model file's format: what `save` writes and `load` checks before trusting it.

A model file is a NumPy .npz archive (no pickles) of
- `__meta__`: a JSON string {"format": 1, "class": name, "params": the constructor's arguments,
  "loss_curve": [...]};
- `state/<attr>`: each fitted attribute (an `_InputSpec` as `state/<attr>.<field>`);
- `param/<block>/<name>`: every weight.

Reading: each entry checked as save writes it and fit makes it. A ValueError names the entry (load
puts the file's path in front).
"""
import json
import math
import zipfile
import zlib

import numpy as np

_FORMAT_VERSION = 1
_META_KEYS = ("format", "class", "params", "loss_curve")
_KIND_WORDS = {"iu": "an int", "f": "a float", "b": "a bool", "U": "a str"}
_LABEL_KINDS = "biufSU"         # what np.unique sorts: numbers and strings


def _read_meta(entry):
    """The __meta__ entry (a JSON string) as the dict save writes."""
    if entry is None:
        raise ValueError("not a fastrnn model file (no __meta__ entry)")
    if entry.ndim != 0 or entry.dtype.kind != "U":
        raise ValueError(f"__meta__: expected a JSON string, got an array of dtype {entry.dtype}, shape {entry.shape}")
    try:
        meta = json.loads(str(entry))
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"__meta__ is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"__meta__: expected a JSON object, got {type(meta).__name__}")
    missing, extra = [k for k in _META_KEYS if k not in meta], sorted(set(meta) - set(_META_KEYS))
    if missing or extra:
        raise ValueError(f"{', '.join(missing)} missing" if missing else f"__meta__: unexpected keys {extra}")
    if isinstance(meta["format"], bool) or meta["format"] != _FORMAT_VERSION:
        raise ValueError(f"unsupported model format {meta['format']!r:.40}")
    if not isinstance(meta["params"], dict):
        raise ValueError(f"params: expected a JSON object, got {type(meta['params']).__name__}")
    curve = meta["loss_curve"]
    if not isinstance(curve, list) or not all(type(x) is float and math.isfinite(x) for x in curve):
        raise ValueError(f"loss_curve: expected a list of finite numbers, got {curve!r:.60}")
    return meta


def _entry(st, key, kinds, ndim=0, size=None):
    """Take the array state/`key` out of `st`: a dtype of a kind in `kinds`, `ndim` dimensions,
    `size` values (None: any number)."""
    if key not in st:
        raise ValueError(f"state/{key}: missing")
    a = st.pop(key)
    if a.dtype.kind not in kinds:
        raise ValueError(f"state/{key}: expected {_KIND_WORDS.get(kinds, 'numbers or strings')}, got dtype {a.dtype}")
    if a.ndim != ndim:
        raise ValueError(f"state/{key}: expected a {ndim}-D array, got shape {a.shape}")
    if size is not None and len(a) != size:
        raise ValueError(f"state/{key}: expected {size} values, got {len(a)}")
    return a


def _check_int(st, key, lo=1, hi=None):
    """A count: an int in [lo, hi]."""
    v = int(_entry(st, key, "iu"))
    if v < lo or (hi is not None and v > hi):
        want = "a positive int" if (lo, hi) == (1, None) else f"an int >= {lo}" if hi is None else \
            f"an int in [{lo}, {hi}]"
        raise ValueError(f"state/{key}: expected {want}, got {v}")
    return v


def _check_flag(st, key, true_ok=True, why=""):
    v = bool(_entry(st, key, "b"))
    if v and not true_ok:
        raise ValueError(f"state/{key}: is True, but {why}")
    return v


def _sorted_distinct(a):
    """Whether the 1-D `a` is as np.unique makes it: strictly increasing, no NaN."""
    return not (a.dtype.kind == "f" and np.isnan(a).any()) and not np.any(a[1:] <= a[:-1])


def _check_labels(st, key, lo=1, size=None, kinds=_LABEL_KINDS):
    """Classes or tokens: at least `lo` sorted distinct values (`size` of them)."""
    a = _entry(st, key, kinds, 1, size)
    if len(a) < lo or not _sorted_distinct(a):
        raise ValueError(f"state/{key}: expected at least {lo} sorted distinct values without NaN, got {a!r:.80}")
    return a


def _check_chars(st, key):
    """An alphabet: a non-empty str of sorted distinct characters."""
    s = str(_entry(st, key, "U"))
    if not s or not _sorted_distinct(np.array(list(s))):
        raise ValueError(f"state/{key}: expected a str of sorted distinct characters, got {s!r:.60}")
    return s


def _check_floats(st, key, size, positive=False, total=None):
    """`size` finite floats (> 0 when positive; summing to `total`, frequencies)."""
    a = _entry(st, key, "f", 1, size)
    if not np.all(np.isfinite(a)) or (positive and not np.all(a > 0)) or \
            (total is not None and not np.isclose(a.sum(), total)):
        want = f"{size} finite{' positive' if positive else ''} numbers" + (f" summing to {total:g}" if total else "")
        raise ValueError(f"state/{key}: expected {want}, got {a!r:.80}")
    return a


def _read_archive(path):
    """The arrays of the .npz file at `path` by name, without unpickling anything; ValueError (the
    path in front) for what is not an .npz archive of plain arrays."""
    try:
        f = np.load(path, allow_pickle=False)
    except (ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a NumPy .npz file ({exc})") from None
    if not isinstance(f, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: not a NumPy .npz file (a single .npy array)")
    files = {}
    with f:
        for k in f.files:
            try:
                files[k] = f[k]
            except (ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
                raise ValueError(f"{path}: {k}: cannot be read ({exc})") from None
            if not isinstance(files[k], np.ndarray):
                raise ValueError(f"{path}: {k}: not a NumPy array")
    return files
