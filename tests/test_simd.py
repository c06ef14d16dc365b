"""The instruction-set levels: every level this CPU runs passes the backend suite, FASTRNN_SIMD chooses
one (or fails clearly), show_config() tells which, and the default build runs on older CPUs, emulated
by qemu-x86_64 (-cpu Westmere: SSE4.2, no AVX; -cpu Haswell: AVX2 + FMA, no AVX-512), each on its
widest level, both through Python (the installed extension) and through the C entry points
(tests/cross_driver.c)."""
import os
import platform
import shutil
import subprocess
import sys

import numpy as np
import pytest

import fastrnn
from conftest import assert_close
from driver_build import assert_same_outputs, build, outputs, setup_tables

pytestmark = pytest.mark.skipif("c" not in fastrnn.backends(), reason="compiled backend not built")

HERE = os.path.dirname(os.path.abspath(__file__))
X86 = platform.machine().lower() in ("x86_64", "amd64")


def levels():
    from fastrnn import _ckernels

    return _ckernels.simd_levels()      # (in use, built, this CPU runs)


def python(code, tmp_path, env=None, prefix=()):
    """Run `code` in a fresh interpreter (optionally under `prefix`, e.g. qemu), from a temporary
    directory so that the installed package is imported, not the source tree. Under emulation
    OPENBLAS_CORETYPE is dropped: it names the host's kernel (Haswell on some of these machines), which
    the emulated CPU may lack (NumPy's OpenBLAS then dies with SIGILL at `import numpy` on a Westmere)."""
    full_env = dict(os.environ)
    full_env.pop("FASTRNN_SIMD", None)
    if prefix:
        full_env.pop("OPENBLAS_CORETYPE", None)
    full_env.update(env or {})
    return subprocess.run([*prefix, sys.executable, "-c", code], cwd=tmp_path, env=full_env, capture_output=True,
                          text=True, timeout=600)


def test_default_is_the_widest_level_the_cpu_runs():
    now, built, cpu = levels()
    assert cpu, "this CPU runs none of the levels built"
    assert now == cpu[0] or os.environ.get("FASTRNN_SIMD")
    assert set(cpu) <= set(built)
    if X86 and "native" not in built:
        assert built == ["avx512", "avx2", "baseline"]
        assert "baseline" in cpu


def test_show_config_names_the_level():
    with open(os.devnull, "w") as devnull:
        info = fastrnn.show_config(file=devnull)
    now, built, cpu = levels()
    assert info["simd"].startswith(now + " ("), info["simd"]
    assert f"built: {' '.join(built)}" in info["simd"] and f"this CPU runs: {' '.join(cpu)}" in info["simd"]


@pytest.mark.parametrize("level", ["baseline", "avx2", "avx512"])
def test_fastrnn_simd_chooses_a_level(level, tmp_path):
    _, built, cpu = levels()
    res = python("import fastrnn; print(fastrnn.show_config(file=open('/dev/null', 'w'))['simd'])", tmp_path,
                 {"FASTRNN_SIMD": level.upper()})
    if level in cpu:
        assert res.returncode == 0, res.stderr
        assert res.stdout.startswith(level + " ("), res.stdout
    else:
        assert res.returncode != 0
        why = "this build has only" if level not in built else "this CPU cannot run it"
        assert "SimdError" in res.stderr and why in res.stderr, res.stderr


@pytest.mark.parametrize("value,message", [("sse9", "expected one of baseline, avx2, avx512, native"),
                                           ("native", "this build has only")])
def test_fastrnn_simd_refuses_at_import(value, message, tmp_path):
    if value == "native" and "native" in levels()[1]:
        pytest.skip("a -march=native build")
    res = python("import fastrnn", tmp_path, {"FASTRNN_SIMD": value})
    assert res.returncode != 0
    assert "fastrnn._config.SimdError" in res.stderr and message in res.stderr, res.stderr


def test_select_refuses_and_keeps_the_level():
    from fastrnn import _ckernels
    from fastrnn._config import SimdError

    before = levels()[0]
    for bad in ("sse9", "AVX2 "):
        with pytest.raises(SimdError, match="not a level"):
            _ckernels._select_simd(bad)
        assert levels()[0] == before


@pytest.mark.parametrize("kind", ["rnn", "gru"])
def test_every_level_matches_the_reference(kind):
    """In one process: each level the CPU runs, switched in turn, against the NumPy reference (the
    whole backend suite at each level: test_backend_suite_at_level)."""
    from fastrnn import _ckernels
    from fastrnn import functional as F
    from fastrnn import reference as R

    rng = np.random.default_rng(3)
    T, B, I, H, G = 7, 5, 9, 37, 3 if kind == "gru" else 1
    x = rng.standard_normal((T, B, I), dtype=np.float32)
    h0 = rng.standard_normal((B, H), dtype=np.float32)
    w = [rng.uniform(-0.3, 0.3, s).astype(np.float32) for s in ((G * H, I), (G * H, H), (G * H,), (G * H,))]
    d_out = rng.standard_normal((T, B, H), dtype=np.float32)
    d_hn = rng.standard_normal((B, H), dtype=np.float32)
    fwd, bwd = (F.gru_forward, F.gru_backward) if kind == "gru" else (F.rnn_forward, F.rnn_backward)
    rfwd, rbwd = (R.gru_forward, R.gru_backward) if kind == "gru" else (R.rnn_forward, R.rnn_backward)
    ro, rh, rc = rfwd(x, h0, *w)
    ref = (ro, rh, *rbwd(d_out, d_hn, rc))
    before, _, cpu = levels()
    try:
        for level in cpu:
            _ckernels._select_simd(level)
            out, h_n, cache = fwd(x, h0, *w, backend="c")
            got = (out, h_n, *bwd(d_out, d_hn, cache))
            for name, a, b in zip(("out", "h_n", "dx", "dh0", "dw_ih", "dw_hh", "db_ih", "db_hh"), got, ref):
                assert_close(a, b, np.float32, f"{level} {name}")
    finally:
        _ckernels._select_simd(before)


@pytest.mark.parametrize("level", ["avx2", "baseline"])
def test_backend_suite_at_level(level, tmp_path):
    """The backend suite (vs the reference, every option; bitwise thread invariance; gradients added
    into given arrays; the activations' ulp bound) run again with FASTRNN_SIMD=level, for each level
    this CPU runs besides the default (which the rest of the test run covers)."""
    now, _, cpu = levels()
    if level not in cpu or level == now:
        pytest.skip(f"{level}: {'the default level' if level == now else 'not run by this CPU'}")
    files = [os.path.join(HERE, f) for f in ("test_backends.py", "test_threads.py", "test_grads_into.py",
                                                 "test_activations.py")]
    env = dict(os.environ, FASTRNN_SIMD=level)
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *files], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert " passed" in res.stdout and " failed" not in res.stdout


# ---- older CPUs, emulated --------------------------------------------------------------------------

QEMU = shutil.which("qemu-x86_64")
# (the sanitizer job preloads ASan, whose shadow memory qemu's guest address space cannot hold)
SANITIZED = "libasan" in os.environ.get("LD_PRELOAD", "")
needs_qemu = pytest.mark.skipif(not (X86 and QEMU) or SANITIZED,
                                reason="not an x86-64 machine" if not X86 else
                                "qemu-x86_64 not installed (apt-get install qemu-user)" if not QEMU else
                                "under AddressSanitizer (the plain CI job runs it)")

# A short forward + backward of both cells (lengths, reverse, both GRU variants) against the reference,
# in float32 and float64; prints the level chosen.
EMULATED = """
import numpy as np
import fastrnn
from fastrnn import _ckernels, functional as F, reference as R
rng = np.random.default_rng(0)
T, B, I, H = 6, 3, 5, 19
worst = 0.0
for dt, tol in ((np.float32, 1e-4), (np.float64, 1e-10)):
    for kind, opts in (("rnn", {"nonlinearity": "tanh"}), ("gru", {"reset_after": True}),
                       ("gru", {"reset_after": False, "reverse": True, "lengths": np.array([6, 2, 0])})):
        G = 3 if kind == "gru" else 1
        x = rng.standard_normal((T, B, I)).astype(dt)
        h0 = rng.standard_normal((B, H)).astype(dt)
        w = [rng.uniform(-0.4, 0.4, s).astype(dt) for s in ((G * H, I), (G * H, H), (G * H,), (G * H,))]
        d_out, d_hn = rng.standard_normal((T, B, H)).astype(dt), rng.standard_normal((B, H)).astype(dt)
        fwd, bwd = getattr(F, kind + "_forward"), getattr(F, kind + "_backward")
        rfwd, rbwd = getattr(R, kind + "_forward"), getattr(R, kind + "_backward")
        o, h, c = fwd(x, h0, *w, backend="c", **opts)
        ro, rh, rc = rfwd(x, h0, *w, **opts)
        for a, b in zip((o, h, *bwd(d_out, d_hn, c)), (ro, rh, *rbwd(d_out, d_hn, rc))):
            err = np.linalg.norm((a - b).astype(np.float64)) / max(np.linalg.norm(b.astype(np.float64)), 1e-300)
            assert err <= tol, (kind, opts, dt, err)
            worst = max(worst, err / tol)
print("LEVEL", _ckernels.simd_levels()[0], "WORST", worst)
"""


@needs_qemu
@pytest.mark.parametrize("cpu,expected", [("Westmere", "baseline"), ("Haswell", "avx2")])
def test_runs_on_older_cpus(cpu, expected, tmp_path):
    if "native" in levels()[1]:
        pytest.skip("a -march=native build runs only where it was built")
    res = python(EMULATED, tmp_path, prefix=(QEMU, "-cpu", cpu))
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"LEVEL {expected} " in res.stdout, res.stdout


@needs_qemu
def test_kernels_run_on_older_cpus(tmp_path):
    """The kernels compiled for every x86-64 level as setup.py compiles them, linked into
    tests/cross_driver.c (the public entry points, no Python): run natively, then under qemu as a
    Westmere and as a Haswell, each chooses its widest level and gives the native run's outputs."""
    all_levels = setup_tables()._X86_LEVELS
    exe = build("gcc" if shutil.which("gcc") else "cc", str(tmp_path), all_levels)
    env = {k: v for k, v in os.environ.items() if k != "FASTRNN_SIMD"}
    env["OMP_NUM_THREADS"] = "2"

    def run(*prefix):
        res = subprocess.run([*prefix, exe], capture_output=True, text=True, env=env, timeout=600)
        assert res.returncode == 0, (prefix, res.returncode, res.stderr[-2000:])
        return outputs(res.stdout)

    ref, native_level = run()
    if "native" not in levels()[1]:
        assert native_level == levels()[2][0]        # the widest this CPU runs, as the extension chose
    for cpu, expected in (("Westmere", "baseline"), ("Haswell", "avx2")):
        got, level = run(QEMU, "-cpu", cpu)
        assert level == expected, (cpu, level)
        assert_same_outputs(got, ref)


@needs_qemu
@pytest.mark.parametrize("cpu,asked,runs", [("Westmere", "avx2", "baseline"), ("Haswell", "avx512", "avx2")])
def test_a_level_the_cpu_lacks_is_an_error_not_a_crash(cpu, asked, runs, tmp_path):
    if "native" in levels()[1]:
        pytest.skip("a -march=native build")
    res = python("import fastrnn", tmp_path, {"FASTRNN_SIMD": asked}, prefix=(QEMU, "-cpu", cpu))
    assert res.returncode == 1, (res.returncode, res.stderr[-2000:])
    assert "SimdError" in res.stderr and f"this CPU cannot run it; it runs {runs}" in res.stderr, res.stderr
