"""Command line: `python -m fastrnn demo` and `python -m fastrnn generate FILE`.

demo      Train a vanilla RNN and a GRU on the adding problem at increasing sequence lengths and
          print a table of their test error against the trivial baseline: where the vanilla RNN
          stops learning (vanishing gradients) and the GRU keeps going. Saves a PNG of the learning
          curves when matplotlib is installed. About 1-2 minutes on 2 cores (--quick: seconds).
generate  Train a character language model on a text file and print samples from it.

This file is the command line only; the experiments are fastrnn/demo.py.
"""
import argparse
import os
import sys

from . import __version__
from ._config import get_num_threads, set_num_threads
from .demo import run_demo, run_generate

def _int_list(text):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 2:
        raise argparse.ArgumentTypeError(f"expected sequence lengths >= 2, got {text!r}")
    return values


def _positive_int(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m fastrnn",
        description="fastrnn: RNN and GRU networks in NumPy with C/OpenMP kernels.",
        epilog="Examples:\n  python -m fastrnn demo\n  python -m fastrnn demo --quick\n"
               "  python -m fastrnn generate book.txt --chars 400 --temperature 0.7",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"fastrnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo", help="vanilla RNN vs GRU on the adding problem at increasing lengths (vanishing gradients)",
        description="Train a vanilla RNN and a GRU (same size, same optimizer, same data) on the adding "
                    "problem -- predict the sum of the two marked numbers in a sequence of T random "
                    "numbers -- for increasing T, and print the test error of each against the trivial "
                    "baseline (always predict 1: MSE 1/6). The vanilla RNN fails once T is long enough "
                    "for its gradients to vanish; the GRU's update gate carries the marked numbers "
                    "across all T steps. Runs in about 1-2 minutes on 2 cores.")
    demo.add_argument("--lengths", type=_int_list, default=None,
                      help="comma-separated sequence lengths (default 10,20,50,100,200; --quick: 5,20)")
    demo.add_argument("--hidden-size", type=_positive_int, default=None, help="units per model (default 64)")
    demo.add_argument("--samples", type=_positive_int, default=None,
                      help="training sequences per model at most (default 60000; fresh ones, never repeated)")
    demo.add_argument("--batch-size", type=_positive_int, default=32, help="mini-batch size (default 32)")
    demo.add_argument("--learning-rate", type=float, default=1e-2, help="Adam learning rate (default 1e-2)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--time-limit", type=float, default=170.0,
                      help="seconds for all training; shared out in proportion to each run's cost (default 170)")
    demo.add_argument("--threads", type=_positive_int, default=1,
                      help="fastrnn threads (default 1: these networks are small, and one thread beats "
                           "two on a shared 2-core machine)")
    demo.add_argument("--plot", default="fastrnn_demo.png",
                      help="where to save the learning curves (PNG; needs matplotlib; default fastrnn_demo.png)")
    demo.add_argument("--no-plot", action="store_true", help="do not save the PNG")
    demo.add_argument("--quick", action="store_true", help="a tiny version that runs in seconds (for tests)")
    demo.add_argument("--backend", default=None, help="kernel backend: c or numpy (default: the fastest built)")

    gen = sub.add_parser(
        "generate", help="train a character language model on a text file and print samples",
        description="Train a CharLanguageModel (a GRU over characters, truncated BPTT) on FILE and print "
                    "samples generated from it, with the model's loss per character on held-out text.")
    gen.add_argument("file", metavar="FILE", help="a text file (UTF-8; undecodable bytes are replaced)")
    gen.add_argument("--chars", type=_positive_int, default=400, help="characters per sample (default 400)")
    gen.add_argument("--samples", type=_positive_int, default=3, help="number of samples (default 3)")
    gen.add_argument("--prompt", default="", help="text the samples continue (default: none)")
    gen.add_argument("--temperature", type=float, default=0.8,
                     help="sampling temperature: <1 safer, >1 wilder, 0 greedy (default 0.8)")
    gen.add_argument("--epochs", type=_positive_int, default=10, help="passes over the text (default 10)")
    gen.add_argument("--max-chars", type=_positive_int, default=None,
                     help="use only the first N characters of the file")
    gen.add_argument("--hidden-size", type=_positive_int, default=256, help="GRU units (default 256)")
    gen.add_argument("--num-layers", type=_positive_int, default=1, help="stacked GRU layers (default 1)")
    gen.add_argument("--seq-length", type=_positive_int, default=64,
                     help="characters per truncated-BPTT chunk (default 64)")
    gen.add_argument("--cell", choices=("gru", "rnn"), default="gru", help="recurrent cell (default gru)")
    gen.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    gen.add_argument("--threads", type=_positive_int, default=None, help="fastrnn threads (default: all cores)")
    gen.add_argument("--save", default=None, metavar="PATH", help="save the trained model (.npz)")
    gen.add_argument("--load", default=None, metavar="PATH", help="load a saved model instead of training")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    threads = get_num_threads()      # the commands may change it; give it back to an in-process caller
    try:
        return _dispatch(parser, args)
    finally:
        if get_num_threads() != threads:
            set_num_threads(threads)


def _dispatch(parser, args):
    if args.command == "demo":
        if args.time_limit <= 0:
            parser.error("demo: --time-limit must be positive")
        run_demo(args)
    elif args.command == "generate":
        if not args.load and not os.path.isfile(args.file):
            parser.error(f"generate: no such file: {args.file}")
        try:
            run_generate(args)
        except (UnicodeError, ValueError) as exc:
            parser.error(f"generate: {exc}")
    else:
        parser.print_help()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
