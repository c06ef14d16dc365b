"""Build the C/Cython kernels of fastrnn.

Environment switches (read at build time):
  FASTRNN_OPENMP=0   build serial kernels (no -fopenmp) even when the compiler supports OpenMP.
  FASTRNN_NATIVE=0   do not tune for the build machine's CPU (-march=native is used when accepted).
  FASTRNN_SANITIZE=1 build for AddressSanitizer + UndefinedBehaviorSanitizer (CI's second job): compile
                     and link with -fsanitize=address,undefined,float-cast-overflow
                     -fno-sanitize-recover=all -fno-omit-frame-pointer -g; -O3, OpenMP and
                     -march=native as usual. Python itself is not instrumented, so the
                     ASan runtime must be loaded first: LD_PRELOAD="$(gcc -print-file-name=libasan.so)"
                     (see .ci/run). gcc/clang only.
"""
import os
import sys
import tempfile
import warnings

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
            if not _env_off("FASTRNN_NATIVE") and _compiler_accepts(cc, ["-march=native"], link=False):
                compile_args.append("-march=native")
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
        for ext in self.extensions:
            ext.extra_compile_args = list(ext.extra_compile_args or []) + compile_args
            ext.extra_link_args = list(ext.extra_link_args or []) + link_args
        print(f"fastrnn: OpenMP {'on' if openmp else 'off'}; compile flags {compile_args}; link flags {link_args}",
              file=sys.stderr)
        super().build_extensions()


def extensions():
    import numpy
    from Cython.Build import cythonize

    ext = Extension(
        "fastrnn._ckernels",
        sources=["fastrnn/_ckernels.pyx", "csrc/fastrnn.c"],
        include_dirs=["csrc", numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        depends=["csrc/fastrnn.h", "csrc/kernels_impl.h", "csrc/mathfun.h", "csrc/microkernel.h"],
    )
    return cythonize(
        [ext],
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    )


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
