"""A whole PyTorch training step: torch.nn.GRU against the same model after fastrnn.torch.convert.

Run it from the repository root, with OpenBLAS's core-type overrides unset (SPEC §4):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benches.torch_train               # medium, gnmt
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benches.torch_train --shapes all --rounds 5 \
        --markdown --json torch_train.json
    python -m benches.torch_train --worker fastrnn.torch --shape tiny      # one worker by hand: JSON lines
    ... python -m benches.torch_train --fastrnn-first   # both workers import fastrnn before torch: does that
                                                        # order slow torch down (one shared OpenMP runtime)?

The model, at each shape's T, B, I, H (workloads.SHAPES, "tiny", or TxBxIxH), vocabulary V = --vocab (1000):
    nn.Embedding(V, I) -> nn.GRU(I, H) (one layer, batch_first=False) -> nn.Linear(H, V)
    -> cross-entropy of every time step's logits (T·B of them, the mean) against the next token.
Its weights: torch.manual_seed(0), then each module's own initialisation, so that every worker starts
from the same weights. The tokens: (T + 1, B) integers from numpy.random.default_rng(0), the first T
rows the input, the last T the targets. One step = optimizer.zero_grad(), forward, loss,
loss.backward(), optimizer.step(), with torch.optim.Adam (lr 1e-3) made BEFORE the conversion:
fastrnn.torch.convert shares the Parameters, so that optimizer updates what the converted model uses.

    torch          the model as built (torch.nn.GRU)
    fastrnn.torch  fastrnn.torch.convert(model): its GRU is fastrnn.torch.GRU (checked), the rest torch's

The protocol is orchestrate.measure's: each contender runs in its own worker process (the environment of
orchestrate.worker_env(threads); torch.set_num_threads, torch.set_flush_denormal and
fastrnn.set_num_threads in it), the rounds alternate the contenders' order, a worker times the step
with timing.time_call (warm-up, then the median of the calls), and the result is the median of the
rounds. Before timing, each worker runs CHECK_STEPS steps from the seed-built weights and reports
their losses: the first checks the forward, the second the gradients (Adam's first update moves
every parameter by about lr·sign(gradient)). The parent requires the two contenders' losses to agree
within LOSS_RTOL (relative) after the first round, and stops with an error otherwise: a broken model
is never timed. The table: the median ms of each contender and torch / fastrnn.torch (above 1: the
converted model trains faster).
"""
import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from .orchestrate import WORKER_TIMEOUT_S, Results, worker_env
from .run import NOISY_SPREAD, _positive, info_notes, machine_info, write_json
from .tables import fixed, print_notes, shape_columns, table as render_table
from .timing import time_call
from .workloads import DTYPES, SHAPES, default_threads, parse_shape, parse_shapes

CONTENDERS = ("torch", "fastrnn.torch")
VOCAB = 1000
LR = 1e-3
CHECK_STEPS = 2
LOSS_RTOL = {"float32": 1e-4, "float64": 1e-9}
SEED = 0


class LossMismatch(AssertionError):
    """The contenders' losses from the same weights differ: one of the models is broken."""


def build(name, dims, vocab=VOCAB, dtype="float32"):
    """(step, model) for contender `name` at dims = (T, B, I, H): step() runs one training step and
    returns its loss tensor."""
    import torch
    from torch import nn

    T, B, I, H = dims
    torch_dtype = getattr(torch, dtype)

    class LanguageModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(vocab, I, dtype=torch_dtype)
            self.gru = nn.GRU(I, H, batch_first=False, dtype=torch_dtype)
            self.out = nn.Linear(H, vocab, dtype=torch_dtype)

        def forward(self, tokens):
            return self.out(self.gru(self.embed(tokens))[0])

    torch.manual_seed(SEED)
    model = LanguageModel()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    if name == "fastrnn.torch":
        import fastrnn.torch

        model = fastrnn.torch.convert(model)
        if not isinstance(model.gru, fastrnn.torch.GRU):
            raise RuntimeError(f"fastrnn.torch.convert left the GRU unconverted: {type(model.gru)}")
    elif name != "torch":
        raise ValueError(f"unknown contender {name!r}: expected one of {', '.join(CONTENDERS)}")
    tokens = torch.from_numpy(np.random.default_rng(SEED).integers(0, vocab, (T + 1, B)))
    inputs, targets = tokens[:-1], tokens[1:].reshape(-1)

    def step():
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(inputs).reshape(-1, vocab), targets)
        loss.backward()
        optimizer.step()
        return loss

    return step, model


def worker(name, shapes, threads, dtype="float32", min_time=1.0, vocab=VOCAB, out=sys.stdout, fastrnn_first=False):
    """In this process: for each shape name, the first CHECK_STEPS losses, then the step's time.
    One JSON line per shape, {"info": ...} first. With fastrnn_first, fastrnn is imported (and its
    kernels loaded) before torch, by both contenders: what that order does to torch's own speed."""
    if fastrnn_first:
        import fastrnn

        fastrnn.backends()
    import torch

    emit = lambda record: print(json.dumps(record), file=out, flush=True)
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    info = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    if name == "fastrnn.torch":     # the torch worker loads fastrnn only with fastrnn_first
        import fastrnn

        fastrnn.set_num_threads(threads)
        info.update(fastrnn=fastrnn.__version__, threads=f"{info['threads']} (torch), "
                                                        f"{fastrnn.get_num_threads()} (fastrnn)")
    emit({"info": info})
    for shape in shapes:
        record = {"shape": shape}
        try:
            step, _ = build(name, parse_shape(shape), vocab, dtype)
            record["losses"] = [step().item() for _ in range(CHECK_STEPS)]
            record["time_s"], record["runs"] = time_call(step, min_time)
        except Exception as exc:  # reported; the other shapes still run
            record["error"] = f"{type(exc).__name__}: {exc}"
        step = None
        emit(record)


def run_worker(name, shapes, threads, dtype, min_time, vocab, fastrnn_first=False, timeout=WORKER_TIMEOUT_S):
    """One worker process; returns (info or None, {shape: record}, problem or None)."""
    cmd = [sys.executable, "-m", "benches.torch_train", "--worker", name, "--threads", str(threads),
           "--dtype", dtype, "--min-time", str(min_time), "--vocab", str(vocab)]
    if fastrnn_first:
        cmd.append("--fastrnn-first")
    for shape in shapes:
        cmd += ["--shape", shape]
    try:
        proc = subprocess.run(cmd, env=worker_env(threads), capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, {}, f"worker timed out after {timeout} s"
    info, records = None, {}
    for line in proc.stdout.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "shape" in record:
            records[record["shape"]] = record
        elif isinstance(record, dict) and "info" in record:
            info = record["info"]
    problem = None
    if proc.returncode != 0:
        problem = f"worker exited with code {proc.returncode}" + (
            ": " + proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "")
    return info, records, problem


def check_losses(losses, dtype):
    """losses = {contender: {shape: [loss per step]}}; LossMismatch unless every contender agrees with
    the first within LOSS_RTOL."""
    first, *others = losses
    for other in others:
        for shape, ref in losses[first].items():
            got = losses[other].get(shape)
            if got is None:
                continue
            err = max(abs(a - b) / max(abs(b), 1e-30) for a, b in zip(got, ref))
            if not err <= LOSS_RTOL[dtype]:
                raise LossMismatch(f"{shape}: losses of the first {CHECK_STEPS} steps differ: {first} {ref}, "
                                   f"{other} {got} (relative {err:.2e} > {LOSS_RTOL[dtype]:g})")


def measure(shapes, *, threads, rounds=3, dtype="float32", min_time=1.0, vocab=VOCAB, fastrnn_first=False,
            progress=None):
    """{"seconds": {contender: {shape: [per round]}}, "losses": {contender: {shape: [...]}},
    "info": {contender: ...}, "problems": [...]}; raises LossMismatch after the first round if the
    models disagree."""
    seconds = {n: {} for n in CONTENDERS}
    losses = {n: {} for n in CONTENDERS}
    problems, info = [], {}
    for r in range(rounds):
        order = CONTENDERS[r % 2:] + CONTENDERS[:r % 2]
        for name in order:
            started = time.perf_counter()
            info[name], records, problem = run_worker(name, list(shapes), threads, dtype, min_time, vocab,
                                                      fastrnn_first)
            if problem:
                problems.append(f"{name} round {r + 1}: {problem}")
            for shape, record in records.items():
                if "error" in record:
                    problems.append(f"{name} {shape} round {r + 1}: {record['error']}")
                if "losses" in record:
                    losses[name].setdefault(shape, record["losses"])
                if "time_s" in record:
                    seconds[name].setdefault(shape, []).append(record["time_s"])
            if progress:
                progress(f"round {r + 1}/{rounds}: {name} {time.perf_counter() - started:.1f} s"
                         + (f" [{problem}]" if problem else ""))
        if r == 0:
            check_losses(losses, dtype)
    return {"seconds": seconds, "losses": losses, "info": info, "problems": problems}


def rows(shapes, result):
    out = []
    for shape, dims in shapes.items():
        ms = {}
        for n in CONTENDERS:
            times = result["seconds"][n].get(shape)
            ms[n] = statistics.median(times) * 1e3 if times else None
        t, f = ms["torch"], ms["fastrnn.torch"]
        out.append({"shape": shape, **dims._asdict(), "ms": ms,
                    "rounds_ms": {n: [s * 1e3 for s in result["seconds"][n].get(shape, [])] for n in CONTENDERS},
                    "speedup": t / f if t and f else None,
                    "losses": {n: result["losses"][n].get(shape) for n in CONTENDERS}})
    return out


def table(rows, markdown=False):
    cols = shape_columns() + [("torch ms", lambda r: fixed(r["ms"]["torch"])),
                              ("fastrnn.torch ms", lambda r: fixed(r["ms"]["fastrnn.torch"])),
                              ("torch/fastrnn.torch", lambda r: fixed(r["speedup"], "×"))]
    return render_table(rows, cols, 2, markdown)


def simd_level():
    try:
        import fastrnn

        return fastrnn.show_config(file=io.StringIO()).get("simd")
    except Exception:
        return None


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benches.torch_train", description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", default="medium,gnmt",
                   help=f"comma-separated: {', '.join(SHAPES)}, all, tiny or TxBxIxH (default: %(default)s)")
    p.add_argument("--threads", type=_positive(int), default=default_threads())
    p.add_argument("--rounds", type=_positive(int), default=3)
    p.add_argument("--dtype", default="float32", choices=DTYPES)
    p.add_argument("--min-time", type=_positive(float), default=1.0,
                   help="seconds of timed steps per shape and round (default %(default)s)")
    p.add_argument("--vocab", type=_positive(int), default=VOCAB, help="vocabulary size V (default %(default)s)")
    p.add_argument("--fastrnn-first", action="store_true",
                   help="both workers import fastrnn (and load its kernels) before torch")
    p.add_argument("--markdown", action="store_true", help="print a GitHub markdown table")
    p.add_argument("--json", metavar="PATH", help="also write the results and machine info as JSON")
    p.add_argument("--worker", choices=CONTENDERS, help=argparse.SUPPRESS)
    p.add_argument("--shape", action="append", default=[], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.shape, args.threads, args.dtype, args.min_time, args.vocab,
                      fastrnn_first=args.fastrnn_first)
    try:
        shapes = parse_shapes(args.shapes)
    except ValueError as exc:
        p.error(str(exc))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    progress = lambda msg: print(msg, file=sys.stderr, flush=True)
    try:
        result = measure(shapes, threads=args.threads, rounds=args.rounds, dtype=args.dtype,
                         min_time=args.min_time, vocab=args.vocab, fastrnn_first=args.fastrnn_first,
                         progress=progress)
    except LossMismatch as exc:
        sys.exit(f"error: the models disagree, nothing timed is reported: {exc}")
    machine = machine_info(args, Results(info={n: i for n, i in result["info"].items() if i}), load)
    machine["simd"] = simd_level()
    out = rows(shapes, result)
    print(f"\nfastrnn.torch training step (Embedding -> GRU -> Linear -> cross-entropy, Adam, V = {args.vocab}): "
          f"{machine['cpu']}, SIMD {machine['simd']}, {args.threads} thread{'s' * (args.threads > 1)}, "
          f"{args.dtype}, median of {args.rounds} rounds, "
          f"{'fastrnn imported before torch, ' if args.fastrnn_first else ''}{machine['date']}\n")
    print(table(out, markdown=args.markdown))
    print()
    footnotes = ["torch/fastrnn.torch: torch.nn.GRU's step time / the converted model's (above 1: fastrnn.torch is faster)",
                 f"losses of the first {CHECK_STEPS} steps agree within {LOSS_RTOL[args.dtype]:g}: "
                 + "; ".join(f"{r['shape']} {r['losses']['torch']}" for r in out)]
    noisy = [f"{n} {r['shape']}" for r in out for n, t in r["rounds_ms"].items()
             if len(t) > 1 and max(t) > NOISY_SPREAD * min(t)]
    if noisy:
        footnotes.append(f"noisy: the slowest round took over {NOISY_SPREAD}x the fastest (is the machine busy?): "
                         + ", ".join(noisy))
    footnotes += info_notes({name: i for name, i in result["info"].items() if i})
    footnotes += result["problems"]
    print_notes(footnotes, args.markdown)
    if args.json:
        data = {"machine": machine, "settings": {"dtype": args.dtype, "threads": args.threads, "rounds": args.rounds,
                                                 "min_time_s": args.min_time, "vocab": args.vocab, "lr": LR,
                                                 "shapes": {k: list(v) for k, v in shapes.items()}},
                "results": out, "notes": footnotes}
        write_json(args.json, data)


if __name__ == "__main__":
    main()
