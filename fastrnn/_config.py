"""Thread count, instruction-set level, build information, the gradient mode, and the one place
where importing fastrnn changes the process (`on_import`)."""
import contextlib
import operator
import os
import sys
import threading

import numpy as np

_state = {"threads": None, "chosen": False}   # chosen: set by set_num_threads or FASTRNN_NUM_THREADS


_INT_MAX = 2**31 - 1


def max_threads():
    """The most threads the kernels will run: the machine's logical CPUs (os.cpu_count()). More
    would only time-share the cores and wait for each other at every step's barrier."""
    return os.cpu_count() or 1


def _thread_count(name, n):
    """`n` as a thread count: a positive int that fits a C int (TypeError / ValueError otherwise),
    capped at max_threads()."""
    if isinstance(n, (bool, np.bool_)) or not hasattr(type(n), "__index__"):
        raise TypeError(f"{name}: expected a positive int, got {n!r} ({type(n).__name__})")
    n = operator.index(n)
    if not 1 <= n <= _INT_MAX:
        raise ValueError(f"{name}: expected a positive int of at most {_INT_MAX}, got {n}")
    return min(n, max_threads())


def _default_threads():
    env = os.environ.get("FASTRNN_NUM_THREADS")
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"FASTRNN_NUM_THREADS: expected a positive integer, got {env!r}") from None
        _state["chosen"] = True
        return _thread_count("FASTRNN_NUM_THREADS", n)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return max_threads()


def get_num_threads():
    """Threads the kernels use (set_num_threads, else FASTRNN_NUM_THREADS, else the usable cores)."""
    if _state["threads"] is None:
        _state["threads"] = _default_threads()
    return _state["threads"]


def chosen_num_threads():
    """The thread count the user chose (set_num_threads or FASTRNN_NUM_THREADS), or None when the
    kernels run on the default (then fastrnn.torch follows torch.get_num_threads())."""
    get_num_threads()           # reads FASTRNN_NUM_THREADS the first time, which sets "chosen"
    return _state["threads"] if _state["chosen"] else None


# ---- what importing fastrnn does to the process --------------------------------------------------

GOMP_SPINCOUNT = "10000"


def set_omp_wait_policy():
    """GOMP_SPINCOUNT=10000 in os.environ, unless the user set it (or OMP_WAIT_POLICY), or the
    compiled kernels, and with them an OpenMP runtime, are loaded already. libgomp reads it once,
    when it is first loaded; torch's wheel shares that runtime (README: "Use it from PyTorch").

    Why: after a parallel region libgomp's workers spin, by default 300,000 rounds (milliseconds),
    and spinning they steal the cores from the BLAS threads of the big products that come next (SPEC
    §4); 10,000 rounds (a fraction of a millisecond) and they sleep. Not sleeping at once
    (OMP_WAIT_POLICY=PASSIVE, the default here before): waking a sleeping worker cost 60-75 us per
    parallel region on the 2-core VMs, every short call paid it, and so did every parallel operator
    of torch when fastrnn was imported first (a torch language model's training step 210 ms against
    148 ms). Measured there (NumPy GEMMs between GRU calls; a GRU cell step at B = 64): PASSIVE
    131-144 ms and 446-473 us, 10,000 rounds 126-139 ms and 316-333 us, libgomp's default 141-147 ms
    and 317 us."""
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ and \
            "fastrnn._ckernels" not in sys.modules:
        os.environ["GOMP_SPINCOUNT"] = GOMP_SPINCOUNT


def on_import():
    """Everything `import fastrnn` does beyond defining names, in the order it happens (called at the
    top of fastrnn/__init__.py, before anything can load the compiled kernels):

    1. set_omp_wait_policy() (above).
    2. With FASTRNN_SIMD set, the kernels are loaded at once, so that a level that does not exist, was
       not built or cannot run on this CPU is a SimdError at import (_backends.check_simd_request),
       never a silent fallback. Without it nothing is loaded until the first call.

    Loading the compiled kernels (here, or at the first call) selects their SIMD level
    (fastrnn/_ckernels.pyx, its one line at import): the FASTRNN_SIMD one or the widest this CPU runs;
    a build with no level this CPU can run (FASTRNN_NATIVE=1 for another CPU) then refuses to load
    with a SimdError instead of dying on an illegal instruction.

    Nothing else: the thread count is read from FASTRNN_NUM_THREADS on first use (get_num_threads),
    and BLAS threads change only when set_num_threads is called."""
    set_omp_wait_policy()
    from . import _backends

    _backends.check_simd_request()


# ---- instruction-set level of the compiled kernels ---------------------------------------------

SIMD_LEVELS = ("baseline", "avx2", "avx512", "native")


class SimdError(ValueError):
    """FASTRNN_SIMD (or fastrnn._ckernels._select_simd) names a level that does not exist, was not
    built, or that this CPU cannot run."""


def simd_request():
    """The level FASTRNN_SIMD asks for (lower-cased), or None when it is unset or empty: then the
    kernels run the widest level the CPU supports. SimdError for a name that is not a level."""
    env = os.environ.get("FASTRNN_SIMD", "").strip().lower()
    if not env:
        return None
    if env not in SIMD_LEVELS:
        raise SimdError(f"FASTRNN_SIMD: expected one of {', '.join(SIMD_LEVELS)}, got {os.environ['FASTRNN_SIMD']!r}")
    return env


def _blas_controller():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


def set_num_threads(n):
    """Use `n` threads in fastrnn's kernels, and (when threadpoolctl is installed) in the BLAS too,
    so that OpenMP and BLAS never run more threads than asked for between them. `n` must be a
    positive int (TypeError / ValueError otherwise, and the setting is left as it was); more than
    max_threads() (the machine's logical CPUs) is capped to it: get_num_threads() tells."""
    n = _thread_count("set_num_threads", n)
    _state["threads"] = n
    _state["chosen"] = True
    from . import _backends

    _backends.backends()          # load the compiled kernels, and with them scipy's BLAS, first
    ctl = _blas_controller()
    if ctl is not None:
        ctl.limit(limits=n, user_api="blas")


def release_buffers():
    """Free the work buffers that the kernels keep for the calling thread's next call (and those of
    the OpenMP workers serving it), and the memory kept for the next large arrays (at most 256 MiB,
    from arrays that are gone; README: "How it is fast"). The work buffers are also freed when the
    thread exits; call this in a long-lived thread after a large call to give the memory back."""
    from . import _backends

    c = _backends._load("c")
    if c is not None:
        c.release_buffers()


def show_config(file=None):
    """Print the version, backends, OpenMP, BLAS and thread settings; also returns them as a dict."""
    from . import __version__, _backends

    info = {"version": __version__, "backends": _backends.backends(), "threads": get_num_threads()}
    c = _backends._load("c")
    if c is not None:
        info.update(c.build_info())
    else:
        info["c_backend_error"] = str(_backends._errors.get("c"))
    ctl = _blas_controller()
    if ctl is not None:
        info["blas"] = [
            {k: d.get(k) for k in ("internal_api", "version", "num_threads", "architecture", "filepath")}
            for d in ctl.info() if d.get("user_api") == "blas"
        ]
    else:
        info["blas"] = "scipy.linalg.cython_blas (install threadpoolctl for details)"
    for key, value in info.items():
        print(f"{key:>14}: {value}", file=file)
    return info


# ---- gradient mode (as torch.no_grad) ------------------------------------------------------------

_grad = threading.local()


def is_grad_enabled():
    """False inside `with fastrnn.no_grad():` (in this thread): forwards then keep nothing for a backward."""
    return getattr(_grad, "enabled", True)


class set_grad_enabled:
    """Switch gradient recording on or off in this thread; as a function, or as a context manager
    that restores the previous mode on exit (torch.set_grad_enabled)."""

    def __init__(self, mode):
        if not isinstance(mode, (bool, np.bool_)):
            raise TypeError(f"set_grad_enabled: expected a bool, got {type(mode).__name__}")
        self.prev = is_grad_enabled()
        _grad.enabled = bool(mode)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _grad.enabled = self.prev
        return False


class no_grad(contextlib.ContextDecorator):
    """Inference: `with fastrnn.no_grad():` (or `@fastrnn.no_grad()`) makes every forward in this thread
    skip what only a backward needs. The kernels then keep two states instead of all T + 1 (and no gate
    values), the functional forwards return `cache=None`, layers cannot backpropagate through such a
    call, and cells record nothing on their tape."""

    def _recreate_cm(self):       # a fresh instance for every call of a decorated function
        return type(self)()

    def __enter__(self):
        self.prev = is_grad_enabled()
        _grad.enabled = False
        return self

    def __exit__(self, *exc):
        _grad.enabled = self.prev
        return False
