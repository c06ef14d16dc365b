"""The experiments behind `python -m fastrnn` (the command line itself: fastrnn/__main__.py).

run_demo      Train a vanilla RNN and a GRU on the adding problem at increasing sequence lengths and
              print a table of their test error against the trivial baseline: where the vanilla RNN
              stops learning (vanishing gradients) and the GRU keeps going. Saves a PNG of the
              learning curves when matplotlib is installed.
run_generate  Train a character language model on a text file (or load one) and print samples.

Both take the parsed arguments of the command line (an argparse.Namespace) and write their report
to `out`, their progress to `err`.
"""
import math
import sys
import time

import numpy as np

from . import datasets, models
from ._config import get_num_threads, set_num_threads
from ._progress import Progress

SOLVED_FRACTION = 0.1      # "solved": test MSE below 10% of the baseline
CONVERGED_FRACTION = 0.05  # a run stops early once 3 evaluations in a row are below 5% of the baseline
ROUND = 2000               # fresh training sequences between two evaluations


# ---- demo ----------------------------------------------------------------------------------------

def _run_cost(cell, T):
    """Relative time of one training sequence: a fixed part (Python, the head, the evaluation) and
    a part per step (a GRU step does about twice a vanilla RNN step's work at these sizes)."""
    return (T + 15) * (1.8 if cell == "gru" else 1.0)


def _train_one(cell, T, args, budget_s, err):
    """Train one model on fresh adding-problem data; returns (curve [(seen, mse)], final mse, secs, note)."""
    baseline = datasets.ADDING_BASELINE_MSE
    X_test, y_test = datasets.adding_problem(1000, T, random_state=10_000 + args.seed * 1000 + T)
    data_rng = np.random.default_rng([args.seed, T])
    reg = models.SequenceRegressor(cell=cell, hidden_size=args.hidden_size, learning_rate=args.learning_rate,
                                   batch_size=args.batch_size, standardize=False, random_state=args.seed,
                                   backend=args.backend)
    name = "GRU" if cell == "gru" else "vanilla RNN"
    bar = Progress(args.samples, desc=f"T={T:<4d} {name:<11s}", unit="seq", file=err)
    curve, below, note = [], 0, ""
    start = time.perf_counter()
    seen = 0
    while seen < args.samples:
        n = min(ROUND, args.samples - seen)
        X, y = datasets.adding_problem(n, T, random_state=data_rng)
        reg.partial_fit(X, y)
        seen += n
        mse = float(np.mean((reg.predict(X_test) - y_test) ** 2))
        curve.append((seen, mse))
        bar.update(n, steps=n * T, test_mse=mse)
        below = below + 1 if mse < CONVERGED_FRACTION * baseline else 0
        if below >= 3:
            note = "converged"
            break
        if time.perf_counter() - start > budget_s and seen < args.samples:
            note = "time limit"
            break
    secs = time.perf_counter() - start
    bar.close(test_mse=curve[-1][1])
    return curve, curve[-1][1], secs, note


def _verdict(mse):
    return "solved" if mse < SOLVED_FRACTION * datasets.ADDING_BASELINE_MSE else "FAILED"


def run_demo(args, out=None, err=None):
    """The adding-problem comparison; prints the table to `out`, progress to `err`. Returns the results."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    lengths = args.lengths or ([5, 20] if args.quick else [10, 20, 50, 100, 200])
    args.hidden_size = args.hidden_size or (16 if args.quick else 64)
    args.samples = args.samples or (10000 if args.quick else 60000)
    set_num_threads(args.threads)
    baseline = datasets.ADDING_BASELINE_MSE
    print("fastrnn demo: the vanishing-gradient problem, vanilla RNN vs GRU, on the adding problem", file=out)
    print("  task: each step carries a number U(0,1) and a marker; two steps are marked (one in each half); "
          "predict their sum", file=out)
    print(f"  trivial baseline (always predict 1): test MSE {baseline:.3f}; 'solved' = below "
          f"{SOLVED_FRACTION * baseline:.4f} (10% of it)", file=out)
    print(f"  both models: 1 layer of {args.hidden_size} units -> Dense(1), Adam lr {args.learning_rate:g}, "
          f"batches of {args.batch_size}, up to {args.samples:,} fresh training sequences, test on 1,000 "
          f"held-out ones; backend {args.backend or 'default'}, {get_num_threads()} thread(s)", file=out)
    out.flush()

    runs = [(T, cell) for T in lengths for cell in ("rnn", "gru")]
    total_cost = sum(_run_cost(c, T) for T, c in runs)
    results = {}
    t0 = time.perf_counter()
    remaining_cost = total_cost
    for T, cell in runs:
        cost = _run_cost(cell, T)
        left = args.time_limit - (time.perf_counter() - t0)
        budget = max(left, 0.0) * cost / remaining_cost
        remaining_cost -= cost
        results[(T, cell)] = _train_one(cell, T, args, budget, err)
    elapsed = time.perf_counter() - t0

    print("", file=out)
    header = f"{'T':>5} | {'baseline MSE':>12} | {'vanilla RNN MSE':>15} | {'GRU MSE':>9} | {'vanilla RNN':<11} | {'GRU':<6}"
    print(header, file=out)
    print("-" * len(header), file=out)
    for T in lengths:
        r, g = results[(T, "rnn")], results[(T, "gru")]
        print(f"{T:>5} | {baseline:>12.3f} | {r[1]:>15.4f} | {g[1]:>9.4f} | {_verdict(r[1]):<11} | {_verdict(g[1]):<6}",
              file=out)
    print("", file=out)
    rnn_ok = [T for T in lengths if _verdict(results[(T, 'rnn')][1]) == "solved"]
    gru_ok = [T for T in lengths if _verdict(results[(T, 'gru')][1]) == "solved"]
    rnn_fail = [T for T in lengths if T not in rnn_ok]
    gru_fail = [T for T in lengths if T not in gru_ok]
    if rnn_fail:
        print(f"The vanilla RNN stops learning at T = {rnn_fail[0]}" +
              (f" (it solves T <= {max(rnn_ok)})" if rnn_ok else "") +
              ": its gradient through T tanh steps vanishes.", file=out)
    else:
        print("The vanilla RNN solved every length here; try longer ones (--lengths).", file=out)
    if gru_ok:
        print(f"The GRU solves T = {', '.join(map(str, gru_ok))}: its update gate keeps the marked numbers "
              f"for as long as needed." + (f" (Not within this budget: T = {', '.join(map(str, gru_fail))}.)"
                                           if gru_fail else ""), file=out)
    notes = [f"T={T} {('GRU' if c == 'gru' else 'RNN')}" for (T, c), r in results.items() if r[3] == "time limit"]
    if notes:
        print(f"(stopped by the time limit before using all {args.samples:,} sequences: {', '.join(notes)})", file=out)
    print(f"Training time: {elapsed:.1f} s.", file=out)

    if not args.no_plot:
        path = _plot(results, lengths, args.plot, err)
        if path:
            print(f"Learning curves saved to {path}", file=out)
        else:
            print("(pip install matplotlib to get a PNG of the learning curves)", file=out)
    out.flush()
    return results


def _plot(results, lengths, path, err):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        return None
    baseline = datasets.ADDING_BASELINE_MSE
    fig, axes = plt.subplots(1, len(lengths), figsize=(3.2 * len(lengths), 3.2), sharey=True, squeeze=False)
    for ax, T in zip(axes[0], lengths):
        for cell, style, label in (("rnn", "tab:red", "vanilla RNN"), ("gru", "tab:blue", "GRU")):
            curve = results[(T, cell)][0]
            ax.plot([s for s, _ in curve], [m for _, m in curve], color=style, label=label)
        ax.axhline(baseline, color="gray", ls="--", lw=1, label="baseline (predict 1)")
        ax.axhline(SOLVED_FRACTION * baseline, color="gray", ls=":", lw=1, label="solved")
        ax.set_yscale("log")
        ax.set_title(f"T = {T}")
        ax.set_xlabel("training sequences")
    axes[0][0].set_ylabel("test MSE")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Adding problem: vanilla RNN vs GRU (fastrnn)")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except OSError as exc:
        print(f"could not save {path}: {exc}", file=err)
        return None
    finally:
        plt.close(fig)
    return path


# ---- generate ------------------------------------------------------------------------------------

def run_generate(args, out=None, err=None):
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    if args.threads:
        set_num_threads(args.threads)
    if args.temperature < 0 or not math.isfinite(args.temperature):
        raise SystemExit(f"generate: --temperature must be >= 0, got {args.temperature}")
    if args.load:
        lm = models.CharLanguageModel.load(args.load)
        print(f"Loaded {lm!r} from {args.load}", file=out)
        valid = None
    else:
        corpus = datasets.text_corpus(args.file, max_chars=args.max_chars)
        text = corpus.text
        if len(text) < 200:
            raise SystemExit(f"generate: {args.file} has only {len(text)} characters; give a longer text")
        cut = int(len(text) * 0.95)
        train, valid = text[:cut], text[cut:]
        print(f"{args.file}: {len(text):,} characters, {corpus.vocab_size} distinct; training on the first 95%, "
              f"{args.epochs} epochs", file=out)
        out.flush()
        lm = models.CharLanguageModel(cell=args.cell, hidden_size=args.hidden_size, num_layers=args.num_layers,
                                      seq_length=args.seq_length, max_epochs=args.epochs,
                                      random_state=args.seed, verbose=1)
        lm.fit(train)
        valid = "".join(c for c in valid if c in lm.chars_)
        print(f"Trained in {lm.fit_time_:.1f} s: training loss {lm.loss_curve_[-1]:.3f} nats/char", file=out)
        if len(valid) >= 2:
            nll = -lm.score(valid)
            print(f"Held-out text: {nll:.3f} nats/char ({nll / math.log(2):.3f} bits/char, perplexity "
                  f"{math.exp(nll):.2f})", file=out)
        if args.save:
            lm.save(args.save)
            print(f"Model saved to {args.save}", file=out)
    prompt = args.prompt
    unknown = sorted(set(prompt) - set(lm.chars_))
    if unknown:
        raise SystemExit(f"generate: the prompt has characters the model never saw: {''.join(unknown)!r}")
    rng = np.random.default_rng(args.seed)
    for i in range(args.samples):
        sample = lm.generate(args.chars, prompt=prompt, temperature=args.temperature, random_state=rng)
        print(f"\n--- sample {i + 1} (temperature {args.temperature:g}) ---", file=out)
        print(prompt + sample, file=out)
    out.flush()
    return lm
