"""Build the C/Cython kernels of fastrnn.

The kernels (csrc/gemm.c, inplace.c, loop.c, rnn.c, gru.c, level.c) are compiled once per instruction-set level
and float type into the one extension: on x86-64 the baseline (SSE2), AVX2+FMA and AVX-512
(F/VL/BW/DQ); elsewhere the compiler's baseline only. csrc/dispatch.c, compiled for the baseline,
chooses the widest level the CPU runs when the extension loads (FASTRNN_SIMD lowers it), so the
default build, the sdist and a wheel run on any CPU of the architecture.

Environment switches (read at build time):
  FASTRNN_NATIVE=1   compile the kernels once, for the build machine's CPU (-march=native), instead of
                     once per level; the package then runs only on CPUs with every feature of the
                     build machine's (others get an ImportError naming the level, not a crash).
  FASTRNN_OPENMP=0   build serial kernels (no -fopenmp) even when the compiler supports OpenMP.
  FASTRNN_SANITIZE=1 build for AddressSanitizer + UndefinedBehaviorSanitizer (CI's second job): compile
                     and link with -fsanitize=address,undefined,float-cast-overflow
                     -fno-sanitize-recover=all -fno-omit-frame-pointer -g; -O3, OpenMP and
                     the levels as usual. Python itself is not instrumented, so the
                     ASan runtime must be loaded first: LD_PRELOAD="$(gcc -print-file-name=libasan.so)"
                     (see .ci/run). gcc/clang only.
"""
import copy
import glob
import os
import platform
import sys
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def _env_off(name):
    return os.environ.get(name, "1").strip().lower() in ("0", "false", "no", "off")


def _env_on(name):
    return os.environ.get(name, "0").strip().lower() in ("1", "true", "yes", "on")


# FASTRNN_SANITIZE=1. float-cast-overflow is not part of gcc's -fsanitize=undefined (float -> int
# conversions out of range, e.g. of a NaN). -fno-sanitize-recover=all: the first report aborts the
# process, so a test run cannot pass with a report buried in its log. The optimization level stays
# -O3, as in the release build: the sanitizers then check the very loops users run (gcc's
# vectorized loops and their remainders, where an off-by-one hides), and it is the faster choice
# on CI's 2 cores, measured: -O3 builds in 31 s and runs the test suite in 147 s under ASan + UBSan,
# -O1 builds in 15 s but runs it in 240 s (gcc does not vectorize loops at -O1).
_SANITIZE_FLAGS = ["-fsanitize=address,undefined,float-cast-overflow", "-fno-sanitize-recover=all",
                   "-fno-omit-frame-pointer", "-g"]


def _compiler_accepts(compiler, flags, link=True):
    """Compile (and link) a tiny OpenMP-using C file with `flags`; True when both steps succeed."""
    src = "#ifdef _OPENMP\n#include <omp.h>\n#endif\nint main(void){\n#ifdef _OPENMP\nreturn omp_get_max_threads() < 1;\n#else\nreturn 0;\n#endif\n}\n"
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "probe.c")
        with open(path, "w") as f:
            f.write(src)
        try:
            objs = compiler.compile([path], output_dir=tmp, extra_postargs=flags)
            if link:
                compiler.link_executable(objs, os.path.join(tmp, "probe"), extra_postargs=flags)
        except Exception:
            return False
    return True


# The instruction-set levels of an x86-64 build, widest first, and their target flags; the dispatch
# (csrc/dispatch.c) knows them by these names; benches/gemm.py reads this table. -mfma with AVX2: every AVX2 CPU has FMA3 (Haswell, Zen).
_X86_LEVELS = [("avx512", ["-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512dq", "-mavx2", "-mfma"]),
               ("avx2", ["-mavx2", "-mfma"]),
               ("baseline", [])]
# The kernels' own flag: gcc may evaluate both sides of a select in the gate math (x >= 0 ? d : e * d)
# only if an operation in one of them cannot trap; without it the activation loops stay scalar below
# AVX-512 (whose masked instructions need no speculation): measured, the AVX2 GRU forward took 2.5x its
# AVX-512 time. It changes no result (fastrnn never unmasks floating-point traps), unlike the fast-math
# options, which are not used.
_KERNEL_FLAGS = ["-fno-trapping-math"]
# Compiled per level and type; level.c once per level (what the level needs of the CPU).
_KERNEL_SOURCES = ["csrc/gemm.c", "csrc/inplace.c", "csrc/loop.c", "csrc/rnn.c", "csrc/gru.c"]
_HEADERS = sorted(glob.glob("csrc/*.h"))


def _levels(cc):
    """[(name, flags)] of the levels this build compiles the kernels for."""
    if _env_on("FASTRNN_NATIVE"):
        if not _compiler_accepts(cc, ["-march=native"], link=False):
            raise RuntimeError("fastrnn: FASTRNN_NATIVE=1 but the C compiler does not accept -march=native")
        return [("native", ["-march=native"])]
    if cc.compiler_type == "msvc" or platform.machine().lower() not in ("x86_64", "amd64"):
        return [("baseline", [])]
    levels = []
    for name, flags in _X86_LEVELS:
        if _compiler_accepts(cc, flags, link=False):
            levels.append((name, flags))
        else:
            warnings.warn(f"fastrnn: the C compiler does not accept {flags}; building without the {name} level")
    return levels


class BuildExt(build_ext):
    def build_extensions(self):
        cc = self.compiler
        # -fno-wrapv undoes the -fwrapv of Python's CFLAGS, which stops gcc from vectorizing index arithmetic
        compile_args = ["-O3", "-std=gnu11", "-fno-wrapv"]
        link_args = []
        openmp = False
        if cc.compiler_type == "msvc":
            compile_args = ["/O2"]
            if not _env_off("FASTRNN_OPENMP"):
                compile_args.append("/openmp")
                openmp = True
        else:
            if _env_off("FASTRNN_OPENMP"):
                warnings.warn("fastrnn: FASTRNN_OPENMP=0, building serial kernels")
            elif _compiler_accepts(cc, ["-fopenmp"]):
                compile_args.append("-fopenmp")
                link_args.append("-fopenmp")
                openmp = True
            else:
                warnings.warn("fastrnn: the C compiler does not accept -fopenmp; building serial kernels")
            if not openmp and _compiler_accepts(cc, ["-fopenmp-simd"], link=False):
                compile_args.append("-fopenmp-simd")
            if _env_on("FASTRNN_SANITIZE"):
                if not _compiler_accepts(cc, _SANITIZE_FLAGS):
                    raise RuntimeError("fastrnn: FASTRNN_SANITIZE=1 but the C compiler cannot compile and link "
                                       f"with {_SANITIZE_FLAGS}")
                compile_args += _SANITIZE_FLAGS
                link_args += _SANITIZE_FLAGS
        levels = _levels(cc)
        for ext in self.extensions:
            ext.extra_compile_args = list(ext.extra_compile_args or []) + compile_args
            ext.extra_link_args = list(ext.extra_link_args or []) + link_args
            if ext.name == "fastrnn._ckernels":      # the one extension with the C kernels in it
                ext.define_macros = list(ext.define_macros or []) + [(f"FR_BUILT_{name}", "1") for name, _ in levels]
                ext.extra_objects = list(ext.extra_objects or []) + self._kernel_objects(levels, compile_args)
        print(f"fastrnn: OpenMP {'on' if openmp else 'off'}; levels {[name for name, _ in levels]}; compile flags "
              f"{compile_args}; link flags {link_args}", file=sys.stderr)
        super().build_extensions()

    def _kernel_objects(self, levels, compile_args):
        """Compile the kernels once per (level, type), in parallel; returns the object files. A failed
        compile raises (CompileError, with the compiler's message)."""
        jobs = []
        for name, flags in levels:
            for double in (0, 1):
                srcs = _KERNEL_SOURCES + (["csrc/level.c"] if not double else [])
                jobs.append((name, double, srcs, flags))

        def compile_one(job):
            name, double, srcs, flags = job
            out = os.path.join(self.build_temp, "kernels", f"{name}_{'f64' if double else 'f32'}")
            cc = copy.copy(self.compiler)
            return cc.compile(srcs, output_dir=out, macros=[("FR_LEVEL", name), ("FR_DOUBLE", str(double))],
                              include_dirs=["csrc"], extra_postargs=compile_args + flags +
                              (_KERNEL_FLAGS if cc.compiler_type != "msvc" else []),
                              depends=_HEADERS)

        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            return [obj for objs in pool.map(compile_one, jobs) for obj in objs]


def extensions():
    import numpy
    from Cython.Build import cythonize

    ext = Extension(
        "fastrnn._ckernels",
        sources=["fastrnn/_ckernels.pyx", "csrc/runtime.c", "csrc/dispatch.c", "csrc/fingerprint.c"],
        include_dirs=["csrc", numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        depends=_HEADERS + _KERNEL_SOURCES + ["csrc/level.c"],
    )
    # The "c" backend's Python side (outputs, caches, scratch pool) is a plain .py file, compiled by
    # Cython too: a cell's step calls it twice, and compiled it costs ~0.6 us less a call.
    backend = Extension("fastrnn._cbackend", sources=["fastrnn/_cbackend.py"])
    return cythonize(
        [ext, backend],
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    )


if __name__ == "__main__":      # (setuptools runs it so; benches/gemm.py imports the level table)
    setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
