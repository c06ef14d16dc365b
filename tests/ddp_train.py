"""Data-parallel training with fastrnn.torch's GRU and RNN inside torch's DistributedDataParallel (CPU, gloo).

    torchrun --standalone --nproc_per_node 2 tests/ddp_train.py --steps 5 --out ddp.pt
    python tests/ddp_train.py --single --steps 5 --compare ddp.pt    # one process, the whole batch

Every rank builds the same model (same seed), converts it with fastrnn.torch.convert, wraps it in
DistributedDataParallel and trains on its own slice of one fixed global batch. DDP averages the
gradients over the ranks, so with a mean loss and equal slices each step is the step one process
takes on the whole batch: `--single` does that, and both runs print the same losses and end with the
same parameters (float64: equal to rounding). Rank 0 saves the final state_dict to --out.

In a DDP run the script also checks that the ranks' data differ and that their gradients and
parameters are identical after every step. --slice R/W (with --single) trains on rank R's slice
alone (what a rank would do without the averaging); --no-convert keeps torch.nn.GRU / RNN;
--find-unused-parameters is passed to DDP.
"""
import argparse
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

import fastrnn.torch

DTYPE = torch.float64
VOCAB, EMBED, HIDDEN, CLASSES = 20, 8, 16, 5
BATCH, TIME = 8, 12            # the global batch: every rank takes BATCH / world_size sequences


class Net(nn.Module):
    """Tokens (B, T) -> Embedding -> GRU (2 layers) -> bidirectional RNN -> Linear: (B, CLASSES)."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, EMBED, dtype=DTYPE)
        self.gru = nn.GRU(EMBED, HIDDEN, num_layers=2, batch_first=True, dtype=DTYPE)
        self.rnn = nn.RNN(HIDDEN, HIDDEN, batch_first=True, bidirectional=True, dtype=DTYPE)
        self.head = nn.Linear(2 * HIDDEN, CLASSES, dtype=DTYPE)

    def forward(self, tokens):
        x, _ = self.gru(self.embed(tokens))
        x, _ = self.rnn(x)
        return self.head(x.mean(dim=1))


def global_batch(seed):
    """The same (tokens, labels) in every process."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, VOCAB, (BATCH, TIME), generator=g)
    labels = torch.randint(0, CLASSES, (BATCH,), generator=g)
    return tokens, labels


def my_slice(tensor, rank, world_size):
    assert BATCH % world_size == 0, f"the batch of {BATCH} does not split into {world_size} equal slices"
    n = BATCH // world_size
    return tensor[rank * n:(rank + 1) * n]


def same_on_all_ranks(tensors):
    """True when every rank holds exactly the tensors rank 0 holds."""
    flat = torch.cat([t.detach().reshape(-1) for t in tensors])
    rank0 = flat.clone()
    dist.broadcast(rank0, src=0)
    ok = torch.tensor([int(torch.equal(flat, rank0))])
    dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    return bool(ok.item())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--lr", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="where rank 0 saves the final state_dict (torch.save)")
    p.add_argument("--single", action="store_true", help="one process, no torch.distributed")
    p.add_argument("--slice", default=None, metavar="R/W", help="with --single: only rank R of W's slice")
    p.add_argument("--compare", default=None, metavar="PATH",
                   help="print the largest relative difference of the final parameters to a saved state_dict")
    p.add_argument("--no-convert", action="store_true", help="keep torch.nn.GRU / RNN")
    p.add_argument("--find-unused-parameters", action="store_true")
    args = p.parse_args(argv)

    if args.slice and not args.single:
        p.error("--slice R/W goes with --single")
    distributed = not args.single
    if distributed:
        dist.init_process_group("gloo")          # RANK, WORLD_SIZE, MASTER_ADDR/PORT: set by torchrun
        rank, world_size = dist.get_rank(), dist.get_world_size()
    elif args.slice:
        rank, world_size = (int(s) for s in args.slice.split("/"))
    else:
        rank, world_size = 0, 1
    saver = rank == 0 or not distributed         # the process that prints and saves

    torch.manual_seed(args.seed)                 # the same initial parameters in every process
    model = Net()
    if not args.no_convert:
        model = fastrnn.torch.convert(model)     # GRU / RNN -> fastrnn.torch's, same Parameters
        assert isinstance(model.gru, fastrnn.torch.GRU) and isinstance(model.rnn, fastrnn.torch.RNN)
    if distributed:
        model = DDP(model, find_unused_parameters=args.find_unused_parameters)
    params = list(model.parameters())
    opt = torch.optim.SGD(params, lr=args.lr, momentum=0.9)

    tokens, labels = global_batch(args.seed + 1)
    tokens, labels = my_slice(tokens, rank, world_size), my_slice(labels, rank, world_size)
    if distributed:
        assert not same_on_all_ranks([tokens.to(DTYPE)]), "the ranks were given the same data"

    for step in range(args.steps):
        opt.zero_grad()
        loss = F.cross_entropy(model(tokens), labels)      # the mean over this rank's slice
        loss.backward()                                    # DDP: gradients averaged over the ranks
        if distributed:
            assert all(p.grad is not None for p in params), "a parameter got no gradient"
            assert same_on_all_ranks([p.grad for p in params]), f"step {step}: gradients differ across ranks"
        opt.step()
        shown = loss.detach().clone()
        if distributed:                                    # the mean loss over the whole batch
            dist.all_reduce(shown)
            shown /= world_size
        if saver:
            print(f"step {step}: loss {shown.item():.8f}")

    net = model.module if distributed else model
    if distributed:
        assert same_on_all_ranks(list(net.parameters())), "the final parameters differ across ranks"
    state = net.state_dict()
    if saver and args.out:
        torch.save(state, args.out)
    if saver and args.compare:
        other = torch.load(args.compare, weights_only=True)
        worst = max(((state[k] - other[k]).norm() / other[k].norm()).item() for k in state)
        print(f"largest relative difference to {args.compare} over the parameters: {worst:.2e}")
    if distributed:
        # A gloo worker thread can still be releasing DDP's last all-reduce when this process ends;
        # if the interpreter is already shutting down it aborts the process ("terminate called
        # without an active exception"; torch 2.13, about 1 run in 10, with or without fastrnn).
        # A short pause lets it finish first.
        time.sleep(0.1)
        dist.destroy_process_group()
    return state


if __name__ == "__main__":
    main()
