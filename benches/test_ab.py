"""benches.ab: two builds' kernels called in turn in one process.

    pytest benches/test_ab.py

With the installed extension as A and a copy of it as B: the two agree bitwise, and A's outputs and
gradients are bitwise those of the "c" backend on the same inputs (so the harness calls the kernels
as the backend does: the same fr_layer, buffers and shared pre-activation buffer).
"""
import shutil

import numpy as np
import pytest

import fastrnn
from benches import ab

pytestmark = pytest.mark.skipif("c" not in fastrnn.backends(), reason="compiled backend not built")


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    from fastrnn import _ckernels

    copy = tmp_path_factory.mktemp("ab") / "B.so"
    shutil.copy(_ckernels.__file__, copy)
    return _ckernels.__file__, str(copy)


@pytest.mark.parametrize("cell", ["gru", "rnn"])
@pytest.mark.parametrize("pass_", ab.PASSES)
def test_a_build_against_its_copy_matches_the_c_backend(builds, cell, pass_):
    from fastrnn import _backends

    from fastrnn import _ckernels

    dims = (7, 33, 20, 24)
    level = _ckernels.simd_levels()[0]     # the level in use: A is the loaded extension itself
    res = ab.run(*builds, dims, cell, pass_, rounds=2, level=level)
    assert res["bitwise_same"] and res["ratio"] > 0
    x, h0, w_ih, w_hh, b_ih, b_hh, d_out, d_hn = ab.make_inputs(dims, cell)
    c = _backends.get("c")[1]
    option = True if cell == "gru" else "tanh"
    forward, backward = (c.gru_forward, c.gru_backward) if cell == "gru" else (c.rnn_forward, c.rnn_backward)
    out, h_n, data = forward(x, h0, w_ih, w_hh, b_ih, b_hh, option, False, None, need_cache=True, nthreads=2)
    expected = {"out": out, "h_n": h_n}
    if pass_ == "train":
        expected.update(zip(("dx", "dh0", "dw_ih", "dw_hh", "db_ih", "db_hh"), backward(d_out, d_hn, data, nthreads=2)))
    got = res["results"][0]
    assert set(got) == set(expected)
    for name in expected:
        assert np.array_equal(got[name], expected[name]), name


def test_cli_prints_one_line(builds, capsys):
    from fastrnn import _ckernels

    assert ab.main([*builds, "--shape", "5x4x8x16", "--rounds", "2", "--cell", "rnn",
                    "--simd", _ckernels.simd_levels()[0]]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "bitwise the same: True" in out and "backward A" in out


def test_unknown_pass_is_refused(builds):
    with pytest.raises(ValueError, match="pass"):
        ab.run(*builds, (2, 2, 2, 2), "gru", "backward", rounds=1, level="baseline")


def test_b_on_another_level(builds, capsys):
    """--simd-b: B on the baseline level (every x86-64 CPU runs it), A on the widest; both right."""
    from fastrnn import _ckernels

    top = _ckernels.simd_levels()[0]
    res = ab.run(*builds, (6, 3, 10, 40), "gru", "train", rounds=1, level=top, level_b="baseline")
    assert (res["level"], res["level_b"]) == (top, "baseline")
    a, b = res["results"]
    for name in a:
        np.testing.assert_allclose(b[name], a[name], rtol=1e-4, atol=1e-5, err_msg=name)
    assert ab.main([*builds, "--shape", "5x4x8x16", "--rounds", "1", "--simd", top, "--simd-b", "baseline"]) == 0
    line = capsys.readouterr().out
    assert (f"level A {top}, B baseline" if top != "baseline" else "level baseline,") in line
