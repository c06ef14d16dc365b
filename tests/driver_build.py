"""tests/cross_driver.c linked with csrc/ compiled as setup.py compiles the kernels (the same sources,
per-level flags and kernel flags, read from setup.py's tables), for tests that run the kernels without
Python: test_aarch64 (cross-compiled, under qemu-aarch64) and test_simd (every x86-64 level, under
qemu-x86_64 as older CPUs). `outputs` reads the driver's printout, `assert_same_outputs` compares two."""
import collections
import importlib.util
import math
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def setup_tables():
    spec = importlib.util.spec_from_file_location("fastrnn_setup", os.path.join(ROOT, "setup.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)                 # the tables only: setup() runs as __main__
    return mod


def build(cc, outdir, levels=(("baseline", []),)):
    """The driver linked with csrc/ compiled by `cc` for `levels` ([(name, flags)], as setup.py's
    _X86_LEVELS), the dispatch choosing among them at run time."""
    setup = setup_tables()
    base = ["-O3", "-std=gnu11", "-fno-wrapv", "-fopenmp", "-fPIC", "-I", os.path.join(ROOT, "csrc")]
    jobs = []
    for name, flags in levels:
        level = [f"-DFR_LEVEL={name}", *flags, *setup._KERNEL_FLAGS]
        jobs += [(src, [*level, f"-DFR_DOUBLE={d}"], f"{name}.{os.path.basename(src)}.{d}.o")
                 for src in setup._KERNEL_SOURCES for d in (0, 1)]
        jobs.append(("csrc/level.c", [*level, "-DFR_DOUBLE=0"], f"{name}.level.o"))
    built = [f"-DFR_BUILT_{name}=1" for name, _ in levels]
    jobs += [(f"csrc/{f}.c", built, f"{f}.o") for f in ("dispatch", "runtime", "fingerprint")]

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


def assert_same_outputs(got, ref, rtol=1e-4):
    """Every array of the driver's two printouts equal within SPEC §5's float32 tolerance (relative, in
    the 2-norm), all of them present and finite."""
    assert got.keys() == ref.keys() and len(ref) == 4 * 8       # 4 cells x (out, h_n and six gradients)
    for name, r in ref.items():
        g = got[name]
        assert len(g) == len(r), name
        assert all(math.isfinite(v) for v in g), name
        diff = math.sqrt(sum((a - b) ** 2 for a, b in zip(g, r)))
        norm = math.sqrt(sum(b * b for b in r))
        assert diff <= rtol * norm, f"{name}: relative difference {diff / norm:.2e}"
