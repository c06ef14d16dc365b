"""The kernels on aarch64 (the compiler's baseline there: NEON), where this x86-64 machine can run
them: csrc/ cross-compiled with aarch64-linux-gnu-gcc as setup.py compiles the kernels (one level,
"baseline"), linked into a small C program (tests/cross_driver.c: a GRU of both variants, with
lengths and reverse, and an RNN of both nonlinearities, forward and backward through the public
entry points), run under qemu-aarch64, and its every output compared with the same program built
for x86-64's baseline (whose kernels the rest of the suite checks against the reference), within
SPEC §5's float32 tolerance. Skipped where the cross compiler or qemu-aarch64 is missing (.ci/run
installs both) and in the sanitizer job."""
import os
import platform
import shutil
import subprocess

import pytest

from driver_build import assert_same_outputs, build, outputs

CROSS = "aarch64-linux-gnu-gcc"
SYSROOT = "/usr/aarch64-linux-gnu"
SANITIZED = "libasan" in os.environ.get("LD_PRELOAD", "")

pytestmark = [
    pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="compares against x86-64"),
    pytest.mark.skipif(shutil.which(CROSS) is None, reason=f"{CROSS} not installed (apt-get install gcc-aarch64-linux-gnu)"),
    pytest.mark.skipif(shutil.which("qemu-aarch64") is None, reason="qemu-aarch64 not installed (apt-get install qemu-user)"),
    pytest.mark.skipif(SANITIZED, reason="ASan's shadow memory and qemu's guest do not mix"),
]


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
    assert_same_outputs(got, ref)
