"""The kernels on aarch64 (the compiler's baseline there: NEON), where this x86-64 machine can run
them: csrc/ cross-compiled with aarch64-linux-gnu-gcc as setup.py compiles the kernels (one level,
"baseline"), linked into a small C program (tests/cross_driver.c: a GRU of both variants, with
lengths and reverse, and an RNN of both nonlinearities, forward and backward through the public
entry points), run under qemu-aarch64, and its every output compared with the same program built
for x86-64's baseline (whose kernels the rest of the suite checks against the reference), within
SPEC §5's float32 tolerance. Skipped where the cross compiler or qemu-aarch64 is missing (.ci/run
installs both) and in the sanitizer job."""
import collections
import importlib.util
import math
import os
import platform
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CROSS = "aarch64-linux-gnu-gcc"
SYSROOT = "/usr/aarch64-linux-gnu"
SANITIZED = "libasan" in os.environ.get("LD_PRELOAD", "")

pytestmark = [
    pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="compares against x86-64"),
    pytest.mark.skipif(shutil.which(CROSS) is None, reason=f"{CROSS} not installed (apt-get install gcc-aarch64-linux-gnu)"),
    pytest.mark.skipif(shutil.which("qemu-aarch64") is None, reason="qemu-aarch64 not installed (apt-get install qemu-user)"),
    pytest.mark.skipif(SANITIZED, reason="ASan's shadow memory and qemu's guest do not mix"),
]


def _setup_module():
    spec = importlib.util.spec_from_file_location("fastrnn_setup", os.path.join(ROOT, "setup.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)                 # the tables only: setup() runs as __main__
    return mod


def build(cc, outdir):
    """The driver linked with csrc/ compiled by `cc` for the baseline level, as setup.py does."""
    setup = _setup_module()
    base = ["-O3", "-std=gnu11", "-fno-wrapv", "-fopenmp", "-fPIC", "-I", os.path.join(ROOT, "csrc")]
    jobs = [(src, ["-DFR_LEVEL=baseline", f"-DFR_DOUBLE={d}", *setup._KERNEL_FLAGS], f"{os.path.basename(src)}.{d}.o")
            for src in setup._KERNEL_SOURCES for d in (0, 1)]
    jobs.append(("csrc/level.c", ["-DFR_LEVEL=baseline", "-DFR_DOUBLE=0", *setup._KERNEL_FLAGS], "level.o"))
    jobs += [(f"csrc/{f}.c", ["-DFR_BUILT_baseline=1"], f"{f}.o") for f in ("dispatch", "runtime", "fingerprint")]

    def compile_one(job):
        src, flags, obj = job
        out = os.path.join(outdir, obj)
        subprocess.run([cc, *base, *flags, "-c", os.path.join(ROOT, src), "-o", out], check=True)
        return out

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        objs = list(pool.map(compile_one, jobs))
    exe = os.path.join(outdir, "driver")
    subprocess.run([cc, *base, os.path.join(ROOT, "tests", "cross_driver.c"), *objs, "-o", exe, "-lm"], check=True)
    return exe


def outputs(text):
    """name -> values, and the SIMD level line, from the driver's output."""
    values, level = collections.defaultdict(list), None
    for line in text.splitlines():
        parts = line.split()
        if parts[0] == "simd":
            level = parts[1]
        else:
            values[parts[0]].append(float(parts[2]))
    return values, level


def test_aarch64_kernels_match_x86_64(tmp_path):
    (tmp_path / "x86").mkdir()
    (tmp_path / "arm").mkdir()
    native = build("gcc" if shutil.which("gcc") else "cc", str(tmp_path / "x86"))
    cross = build(CROSS, str(tmp_path / "arm"))
    env = dict(os.environ, OMP_NUM_THREADS="2")
    ref, ref_level = outputs(subprocess.run([native], capture_output=True, text=True, check=True, env=env,
                                            timeout=120).stdout)
    got, level = outputs(subprocess.run(["qemu-aarch64", "-L", SYSROOT, cross], capture_output=True, text=True,
                                        check=True, env=env, timeout=600).stdout)
    assert ref_level == level == "baseline"
    assert got.keys() == ref.keys() and len(ref) == 4 * 8       # 4 cells x (out, h_n and six gradients)
    for name, r in ref.items():
        g = got[name]
        assert len(g) == len(r), name
        assert all(math.isfinite(v) for v in g), name
        diff = math.sqrt(sum((a - b) ** 2 for a, b in zip(g, r)))
        norm = math.sqrt(sum(b * b for b in r))
        assert diff <= 1e-4 * norm, f"{name}: relative difference {diff / norm:.2e}"
