"""fastrnn.torch inside torch.nn.parallel.DistributedDataParallel (CPU, gloo): tests/ddp_train.py run
under torchrun with 2 processes, each on its own half of a fixed batch, ends with the parameters one
process gets on the whole batch (float64, 1e-10 relative, every parameter).

The DDP run itself asserts that the two ranks are given different data and that their gradients
(after DDP's all-reduce, which only happens if autograd fires DDP's hooks on fastrnn's parameters)
and final parameters are identical. Here, in addition: one rank's half alone gives other parameters
(so the agreement with the whole batch comes from the averaging), training moved the parameters,
and torch.nn.GRU / RNN on the whole batch agree too. The single-process runs call the script's
main() in this process (no torchrun, no torch.distributed).
"""
import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
import torch.distributed as dist  # noqa: E402

if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with the gloo backend is not available", allow_module_level=True)

import fastrnn  # noqa: E402

SCRIPT = Path(__file__).resolve().parent / "ddp_train.py"
NPROC = 2
STEPS = 5
TOL = 1e-10
TIMEOUT_S = 120


def _child_env():
    """os.environ, with the directory this process imported fastrnn from first on PYTHONPATH (the
    children import the same fastrnn: the editable install, or whatever this test is testing)."""
    env = dict(os.environ)
    root = str(Path(fastrnn.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    if sys.platform.startswith("linux") and os.path.exists("/sys/class/net/lo"):
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")     # no network but localhost: gloo on loopback
    return env


def _run(cmd, cwd):
    """(returncode, stdout, stderr) of cmd; on a timeout the whole process group is killed (torchrun
    and its workers) and the test fails with what they printed."""
    posix = os.name == "posix"
    proc = subprocess.Popen(cmd, cwd=cwd, env=_child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=posix)
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        if posix:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"timed out after {TIMEOUT_S} s: {' '.join(map(str, cmd))}\n"
                    f"--- stdout ---\n{out[-4000:]}\n--- stderr ---\n{err[-8000:]}")
    return proc.returncode, out, err


def _rel_err(a, b):
    d, nb = (a - b).norm().item(), b.norm().item()
    return d / nb if nb > 0 else d


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def script():
    """tests/ddp_train.py as a module (for its main() in this process)."""
    spec = importlib.util.spec_from_file_location("_fastrnn_ddp_train", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _single(script, *args):
    """The final state_dict of script.main([--single, *args]) run here, torch's global RNG left as it was."""
    with torch.random.fork_rng(devices=[]):
        return {k: v.detach().clone() for k, v in script.main(["--single", "--steps", str(STEPS), *args]).items()}


@pytest.fixture(scope="module")
def ddp_params(tmp_path_factory):
    """The parameters rank 0 saved after STEPS steps of the 2-process DDP run."""
    tmp = tmp_path_factory.mktemp("ddp")
    out = tmp / "ddp.pt"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(NPROC),
           str(SCRIPT), "--steps", str(STEPS), "--out", str(out)]
    rc, stdout, stderr = _run(cmd, cwd=tmp)        # any cwd: the script is named by its absolute path
    hint = ("\n(a worker aborting at exit with 'terminate called without an active exception' is torch's "
            "gloo shutdown race, not fastrnn: see the pause before destroy_process_group in ddp_train.py)"
            if "terminate called without an active exception" in stderr else "")
    assert rc == 0 and out.exists(), (
        f"torchrun failed (exit status {rc}; {out} {'exists' if out.exists() else 'missing'}): "
        f"{' '.join(cmd)}\n--- stdout ---\n{stdout[-4000:]}\n--- stderr ---\n{stderr[-8000:]}{hint}")
    return _load(out)


def test_children_import_this_fastrnn(tmp_path):
    rc, out, err = _run([sys.executable, "-c", "import fastrnn; print(fastrnn.__file__)"], cwd=tmp_path)
    assert rc == 0, err
    assert Path(out.strip()).resolve() == Path(fastrnn.__file__).resolve()


def test_ddp_equals_one_process_on_the_whole_batch(ddp_params, script, tmp_path):
    single_file = tmp_path / "single.pt"
    single = _single(script, "--out", str(single_file))
    assert _load(single_file).keys() == single.keys()          # --out saves the state_dict
    assert list(ddp_params) == list(single), (list(ddp_params), list(single))
    for name, expected in single.items():
        got = ddp_params[name]
        assert got.dtype == torch.float64 and got.shape == expected.shape, name
        err = _rel_err(got, expected)
        assert err <= TOL, f"{name}: DDP vs one process on the whole batch: relative error {err:.3e} > {TOL:.0e}"


def test_the_ranks_trained_on_different_data(ddp_params, script):
    """Each rank's half alone gives other parameters than the DDP run (so the gradients were averaged
    across ranks), the halves give different parameters (different data), and training moved them."""
    halves = [_single(script, "--slice", f"{r}/{NPROC}") for r in range(NPROC)]
    start = _single(script, "--steps", "0")

    def distance(a, b):
        return max(_rel_err(a[k], b[k]) for k in b)

    for r, half in enumerate(halves):
        assert distance(ddp_params, half) > 1e-3, f"the DDP run equals rank {r}'s half alone"
    assert distance(halves[0], halves[1]) > 1e-3, "both halves of the batch give the same parameters"
    assert distance(ddp_params, start) > 1e-3, "training did not move the parameters"


def test_ddp_equals_torch_nn_on_the_whole_batch(ddp_params, script):
    """torch.nn.GRU / RNN (not converted), one process, the whole batch: the same parameters."""
    ref = _single(script, "--no-convert")
    for name, expected in ref.items():
        err = _rel_err(ddp_params[name], expected)
        assert err <= TOL, f"{name}: DDP (fastrnn) vs torch.nn on the whole batch: relative error {err:.3e}"
