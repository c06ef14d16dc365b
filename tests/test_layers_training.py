"""A model trained through the layer API learns on real data exactly as the same model in PyTorch
does, step for step, in float64.

Character-level next-character prediction on the Zen of Python (`this.s`, which ships with CPython):
one-hot characters -> fastrnn.GRU (2 layers) or fastrnn.RNN (1 layer, tanh) -> dense layer ->
softmax cross-entropy summed over time and averaged over the batch, written in NumPy here; SGD
(torch.optim.SGD's update, with and without momentum) on the live parameter arrays.
The torch twin is nn.GRU / nn.RNN + nn.Linear + F.cross_entropy with the same reduction, starting
from identical weights. Both must give the same loss at every step and the same final parameters.
"""
import codecs
import contextlib
import io

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

import fastrnn  # noqa: E402

BACKENDS = fastrnn.backends()


def zen_text():
    with contextlib.redirect_stdout(io.StringIO()):  # `import this` prints the Zen once
        import this
    return codecs.decode(this.s, "rot13")


def make_batch(T, B):
    """Inputs (T, B, V) one-hot and integer targets (T, B): B consecutive chunks of T+1 chars."""
    text = zen_text()
    assert text.startswith("The Zen of Python") and len(text) >= B * (T + 1)
    vocab = sorted(set(text))
    index = {c: i for i, c in enumerate(vocab)}
    ids = np.array([index[c] for c in text[:B * (T + 1)]]).reshape(B, T + 1).T   # (T+1, B)
    V = len(vocab)
    x = np.eye(V)[ids[:-1]]              # (T, B, V)
    y = ids[1:]                          # (T, B)
    return x, y, V


def softmax_xent(logits, y, mask):
    """Loss = sum over time, mean over batch, of -log softmax(logits)[y] on unmasked steps;
    returns the loss and d loss / d logits."""
    T, B, V = logits.shape
    z = logits - logits.max(axis=2, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=2, keepdims=True))
    picked = np.take_along_axis(logp, y[..., None], axis=2)[..., 0]        # (T, B)
    loss = -(picked * mask).sum() / B
    d = np.exp(logp)
    np.put_along_axis(d, y[..., None], np.take_along_axis(d, y[..., None], axis=2) - 1, axis=2)
    d *= mask[..., None] / B
    return loss, d


def train_fastrnn(layer, W, b, x, y, lengths, lr, momentum, steps):
    """SGD as torch.optim.SGD(lr, momentum): buf = momentum * buf + grad; p -= lr * buf."""
    T, B, _ = x.shape
    mask = (np.ones((T, B)) if lengths is None
            else (np.arange(T)[:, None] < np.asarray(lengths)[None, :]).astype(np.float64))
    params = dict(layer.parameters(), **{"dense.weight": W, "dense.bias": b})
    bufs = {k: np.zeros_like(p) for k, p in params.items()}
    losses = []
    for _ in range(steps):
        layer.zero_grad()
        out, _ = layer(x, lengths=lengths)                   # (T, B, H)
        logits = out @ W.T + b
        loss, d_logits = softmax_xent(logits, y, mask)
        losses.append(loss)
        grads = dict(layer.grads)
        grads["dense.weight"] = np.einsum("tbv,tbh->vh", d_logits, out)
        grads["dense.bias"] = d_logits.sum(axis=(0, 1))
        layer.backward(d_logits @ W)                         # accumulates into layer.grads
        for k, p in params.items():                          # in place on the live arrays
            bufs[k] *= momentum
            bufs[k] += grads[k]
            p -= lr * bufs[k]
    return np.array(losses)


def train_torch(rnn, dense, x, y, lengths, lr, momentum, steps):
    T, B, V = x.shape
    xt, yt = torch.tensor(x), torch.tensor(y)
    opt = torch.optim.SGD(list(rnn.parameters()) + list(dense.parameters()), lr=lr, momentum=momentum)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        if lengths is None:
            out, _ = rnn(xt)
        else:
            packed = pack_padded_sequence(xt, torch.tensor(lengths), enforce_sorted=False)
            out, _ = pad_packed_sequence(rnn(packed)[0], total_length=T)
        logits = dense(out)
        ce = torch.nn.functional.cross_entropy(logits.reshape(T * B, V), yt.reshape(T * B),
                                               reduction="none").reshape(T, B)
        if lengths is not None:
            ce = ce * (torch.arange(T)[:, None] < torch.tensor(lengths)[None, :])
        loss = ce.sum() / B
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return np.array(losses)


# Plain SGD on this loss (summed over 24 steps) sits on the unigram plateau (~0.8 of the first loss)
# for its first ~60-90 steps with the 2-layer GRU, and larger rates make the run chaotic (torch and
# any faithful port then part ways at ~1e-7 after 20 steps: that is the dynamics, not a bug).
# Heavy-ball momentum (torch.optim.SGD(momentum=0.9)) gets well past the plateau within the step
# budget, which shows that the model learns; a plain-SGD run of 30 steps is kept for the RNN.
CASES = {
    "gru_2layers": dict(cls="GRU", num_layers=2, H=32, lr=0.03, momentum=0.9, steps=70,
                        lengths=False, max_ratio=0.7),
    "gru_2layers_lengths": dict(cls="GRU", num_layers=2, H=32, lr=0.03, momentum=0.9, steps=80,
                                lengths=True, max_ratio=0.7),
    "rnn_1layer_tanh": dict(cls="RNN", num_layers=1, H=48, lr=0.02, momentum=0.9, steps=40,
                            lengths=False, max_ratio=0.7),
    "rnn_1layer_tanh_plain_sgd": dict(cls="RNN", num_layers=1, H=48, lr=0.05, momentum=0.0, steps=30,
                                      lengths=False, max_ratio=0.8),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("backend", BACKENDS)
def test_training_matches_torch_step_for_step(backend, case):
    cfg = CASES[case]
    T, B, steps = 24, 32, cfg["steps"]
    x, y, V = make_batch(T, B)
    lengths = None
    if cfg["lengths"]:
        lengths = np.random.default_rng(0).integers(T // 2, T + 1, size=B).tolist()
    torch.manual_seed(0)
    if cfg["cls"] == "GRU":
        trnn = torch.nn.GRU(V, cfg["H"], num_layers=cfg["num_layers"]).double()
        layer = fastrnn.GRU(V, cfg["H"], num_layers=cfg["num_layers"], dtype=np.float64,
                            backend=backend, seed=1)
    else:
        trnn = torch.nn.RNN(V, cfg["H"], num_layers=cfg["num_layers"], nonlinearity="tanh").double()
        layer = fastrnn.RNN(V, cfg["H"], num_layers=cfg["num_layers"], nonlinearity="tanh",
                            dtype=np.float64, backend=backend, seed=1)
    dense = torch.nn.Linear(cfg["H"], V).double()
    layer.load_state_dict(trnn.state_dict())
    W = dense.weight.detach().numpy().copy()
    b = dense.bias.detach().numpy().copy()

    ours = train_fastrnn(layer, W, b, x, y, lengths, cfg["lr"], cfg["momentum"], steps)
    theirs = train_torch(trnn, dense, x, y, lengths, cfg["lr"], cfg["momentum"], steps)

    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=0)
    assert ours[-1] <= cfg["max_ratio"] * ours[0], \
        f"the loss did not fall to {cfg['max_ratio']} of its start: {ours[0]:.3f} -> {ours[-1]:.3f}"
    final_torch = {k: v.detach().numpy() for k, v in trnn.state_dict().items()}
    final_torch["dense.weight"] = dense.weight.detach().numpy()
    final_torch["dense.bias"] = dense.bias.detach().numpy()
    final_ours = dict(layer.state_dict(), **{"dense.weight": W, "dense.bias": b})
    assert set(final_ours) == set(final_torch)
    for k, v in final_torch.items():
        err = np.linalg.norm(final_ours[k] - v) / np.linalg.norm(v)
        assert err <= 1e-8, (k, err)
