"""`python -m fastrnn demo` (in its quick mode) and `python -m fastrnn generate FILE`."""
import os
import subprocess
import tempfile
import sys

import pytest

from fastrnn import datasets
from fastrnn.__main__ import main



def run_module(*args):
    """`python -m fastrnn ...` with the fastrnn these tests import (the installed one under CI), run
    from a folder outside the source tree so that the uncompiled sources do not shadow it."""
    import fastrnn

    env = dict(os.environ)
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(fastrnn.__file__)))
    env["PYTHONPATH"] = pkg_parent + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "fastrnn", *args], capture_output=True, text=True, env=env,
                          timeout=120, cwd=tempfile.gettempdir())


def test_help_describes_both_commands():
    res = run_module("--help")
    assert res.returncode == 0
    assert "demo" in res.stdout and "generate" in res.stdout
    res = run_module("demo", "--help")
    assert res.returncode == 0 and "--quick" in res.stdout and "adding problem" in res.stdout
    res = run_module("generate", "--help")
    assert res.returncode == 0 and "FILE" in res.stdout and "--temperature" in res.stdout


def test_demo_quick_prints_the_table(capsys, tmp_path):
    png = tmp_path / "curves.png"
    assert main(["demo", "--quick", "--plot", str(png)]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.lstrip().startswith("T |"))
    assert "vanilla RNN MSE" in lines[header] and "GRU MSE" in lines[header]
    rows = [line.split("|") for line in lines[header + 2:header + 4]]
    assert [int(r[0]) for r in rows] == [5, 20]
    for r in rows:
        assert float(r[1]) == pytest.approx(datasets.ADDING_BASELINE_MSE, abs=1e-3)
        assert 0 <= float(r[2]) and 0 <= float(r[3])
        assert r[4].strip() in ("solved", "FAILED") and r[5].strip() in ("solved", "FAILED")
    gru_short = rows[0]
    assert gru_short[5].strip() == "solved"          # the GRU learns the short task even in quick mode
    assert float(gru_short[3]) < 0.1 * datasets.ADDING_BASELINE_MSE
    assert "Training time" in out
    assert "GRU" in err and "test_mse" in err and "seq/s" in err     # progress on stderr
    try:
        import matplotlib
    except ImportError:
        matplotlib = None
    if matplotlib is None:
        assert "pip install matplotlib" in out
    else:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_options(capsys, tmp_path):
    png = tmp_path / "none.png"
    assert main(["demo", "--quick", "--lengths", "4", "--samples", "2000", "--no-plot", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "\n    4 |" in out and not png.exists()
    with pytest.raises(SystemExit):
        main(["demo", "--lengths", "1,x"])


def test_generate_trains_and_samples(capsys, tmp_path):
    text_file = tmp_path / "docs.txt"
    text_file.write_text(datasets.python_docs_text(6000), encoding="utf-8")
    model = tmp_path / "lm.npz"
    args = [str(text_file), "--epochs", "2", "--hidden-size", "32", "--chars", "80", "--samples", "2",
            "--prompt", "The ", "--save", str(model)]
    assert main(["generate", *args]) == 0
    out = capsys.readouterr().out
    assert "6,000 characters" in out and "nats/char" in out and "perplexity" in out
    assert out.count("--- sample") == 2
    assert model.exists()
    assert main(["generate", str(text_file), "--load", str(model), "--chars", "30", "--samples", "1"]) == 0
    assert "--- sample 1" in capsys.readouterr().out


def test_generate_reports_bad_files(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["generate", str(tmp_path / "missing.txt")])
    assert exc.value.code == 2
    assert "no such file" in capsys.readouterr().err
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(SystemExit) as exc:
        main(["generate", str(empty)])
    assert "empty" in capsys.readouterr().err
