"""The parent side of the benchmark protocol (SPEC §4): worker processes, rounds and medians.

    measure()    the timing protocol: each contender runs in its own worker process
                 (`python -m benches.worker`, benches/worker.py), so that the thread pools of
                 different libraries never share a process; the rounds alternate the contenders; a
                 worker times every workload with `benches.timing.time_call` (its warm-up, then
                 repeats until `min_time` and a few runs, the median) and the result is
                 the median of the rounds. Every worker gets the same thread count (OMP_NUM_THREADS,
                 OPENBLAS_NUM_THREADS, MKL_NUM_THREADS, FASTRNN_NUM_THREADS and each library's own
                 setter). A contender that is not installed, or fails, comes back as None: a gap in
                 the table, never a crash. Around each worker the parent probes how well the
                 machine runs that many threads at the moment (benches/probe.py).

    measure_memory()  the memory of one training step (run.py --memory): one fresh worker process per
                 contender and workload, benches.memory.memory_step() in it (peak RSS above the RSS
                 before the step, tracemalloc's peak of NumPy's allocations, and the bytes of
                 fastrnn's forward cache)

    Results      what both return; worker_env(threads) the environment of every worker (also
                 benches.torch_train's).
"""
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

from .memory import MEMORY_WORKER_ENV
from .probe import scaling

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WORKER_TIMEOUT_S = 1800


def worker_env(threads):
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "FASTRNN_NUM_THREADS"):
        env[var] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    return env


def _run_worker(name, ws, threads, min_time, timeout, memory=False):
    """Run one worker process; returns (info or None, {key: record}, problem or None)."""
    cmd = [sys.executable, "-m", "benches.worker", "--worker", name, "--threads", str(threads),
           "--dtype", ws[0].dtype, "--min-time", str(min_time)] + (["--memory"] if memory else [])
    for w in ws:
        cmd += ["--workload", w.key]
    env = worker_env(threads)
    if memory:
        env.update(MEMORY_WORKER_ENV)
    problem = None
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        stdout, stderr = proc.stdout, proc.stderr
        if proc.returncode != 0:
            problem = f"worker exited with code {proc.returncode}"
    except subprocess.TimeoutExpired as exc:
        stdout, stderr = exc.stdout or "", exc.stderr or ""
        problem = f"worker timed out after {timeout} s"
    # TimeoutExpired may carry bytes even with text=True
    stdout, stderr = (s.decode(errors="replace") if isinstance(s, bytes) else s for s in (stdout, stderr))
    if problem and stderr.strip():
        problem += ": " + stderr.strip().splitlines()[-1]
    info, records = None, {}
    for line in stdout.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # something the library printed
        if not isinstance(record, dict):
            continue
        if "info" in record:
            info = record["info"]
        elif "missing" in record:
            problem = record["missing"]
        elif "workload" in record:
            records[record["workload"]] = record
    return info, records, problem


@dataclass
class Results:
    """What measure() returns; times in seconds, None where missing."""

    rounds: dict = field(default_factory=dict)  # contender -> key -> [seconds per round]
    info: dict = field(default_factory=dict)  # contender -> what its setup() reported
    problems: dict = field(default_factory=dict)  # contender -> key (or None: all) -> message
    memory: dict = field(default_factory=dict)  # contender -> key -> memory_step record (measure_memory)
    scaling: dict = field(default_factory=dict)  # contender -> [(probe before, probe after) per round]

    def time(self, contender, w):
        times = self.rounds.get(contender, {}).get(w.key)
        return statistics.median(times) if times else None


def measure(jobs, *, threads, rounds=3, min_time=0.3, timeout=WORKER_TIMEOUT_S, progress=None, probe=True):
    """Time jobs = {contender name: [Workload]} following SPEC §4; returns Results.

    Every round starts one worker process per contender, in an order rotated from round to round.
    With probe, the machine's thread scaling (benches.probe.scaling) is measured in this process
    between the workers (once before the first, then after each): a worker's pair in
    Results.scaling is the probe just before it and the one just after."""
    results = Results()
    names = [name for name, ws in jobs.items() if ws]
    last = scaling(threads) if probe and names else None
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)] if names else []
        for name in order:
            started = time.perf_counter()
            info, records, problem = _run_worker(name, jobs[name], threads, min_time, timeout)
            after = scaling(threads) if probe else None
            results.scaling.setdefault(name, []).append((last, after))
            last = after
            if info is not None:
                results.info[name] = info
            per_key = results.problems.setdefault(name, {})
            if problem and not records:
                per_key[None] = problem
            for w in jobs[name]:
                record = records.get(w.key)
                if record is None:
                    if problem and records:
                        per_key[w.key] = problem
                elif "time_s" in record:
                    results.rounds.setdefault(name, {}).setdefault(w.key, []).append(record["time_s"])
                elif "error" in record:
                    per_key[w.key] = record["error"]
            if progress:
                progress(f"round {r + 1}/{rounds}: {name} ({len(jobs[name])} workloads) "
                         f"{time.perf_counter() - started:.1f} s" + (f" [{problem}]" if problem else ""))
    results.problems = {name: p for name, p in results.problems.items() if p}
    return results


def measure_memory(jobs, *, threads, timeout=WORKER_TIMEOUT_S, progress=None):
    """Memory of one training step for jobs = {contender name: [Workload]}: one fresh worker process
    per contender and workload (memory_step). Returns Results whose `memory` maps
    contender -> key -> memory_step's record."""
    results = Results()
    for name, ws in jobs.items():
        per_key = results.problems.setdefault(name, {})
        for w in ws:
            started = time.perf_counter()
            info, records, problem = _run_worker(name, [w], threads, 0.0, timeout, memory=True)
            if info is not None:
                results.info[name] = info
            record = records.get(w.key, {})
            if "memory" in record:
                results.memory.setdefault(name, {})[w.key] = record["memory"]
            elif "error" in record:
                per_key[w.key] = record["error"]
            elif problem and "unsupported" not in record:
                per_key[w.key if records else None] = problem
            if progress:
                progress(f"memory: {name} {w.key} {time.perf_counter() - started:.1f} s"
                         + (f" [{problem}]" if problem else ""))
            if problem and not records:
                break  # not installed, or the worker fails to start: the same for every workload
    results.problems = {name: p for name, p in results.problems.items() if p}
    return results
