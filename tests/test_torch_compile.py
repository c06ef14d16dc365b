"""torch.compile(fullgraph=True) over fastrnn.torch: the operators trace into one graph (their fakes
and registered autograd), and a converted model trains compiled as it trains eagerly."""
import pytest

torch = pytest.importorskip("torch")

import fastrnn.torch as ft  # noqa: E402

from test_torch_modules import rel_err  # noqa: E402


def test_fullgraph_aot_eager_matches_eager():
    torch.manual_seed(0)
    m = ft.GRU(3, 4, num_layers=2, bidirectional=True, dtype=torch.float64)
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)

    def f(x):
        out, h = m(x)
        return (out * out).sum() + h.sum()
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    a, b = compiled(x), f(x)
    ga, gb = torch.autograd.grad(a, x)[0], torch.autograd.grad(b, x)[0]
    assert rel_err(a, b) <= 1e-12 and rel_err(ga, gb) <= 1e-12


class Tagger(torch.nn.Module):
    """Embedding -> GRU (2 layers) and an RNN cell over its outputs -> Linear, a torch model as written
    for torch.nn, converted below."""

    def __init__(self, V=20, I=6, H=8):
        super().__init__()
        self.emb = torch.nn.Embedding(V, I)
        self.gru = torch.nn.GRU(I, H, num_layers=2, batch_first=True)
        self.cell = torch.nn.RNNCell(H, H)
        self.out = torch.nn.Linear(H, V)

    def forward(self, tokens, targets):
        h, _ = self.gru(self.emb(tokens))
        s, states = None, []
        for t in range(h.shape[1]):
            s = self.cell(h[:, t], s)
            states.append(s)
        logits = self.out(torch.stack(states, 1))
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def test_converted_model_trains_compiled_with_inductor_as_eager():
    """The default backend (inductor, ~10 s to compile here): the same loss at every step in float64."""
    def make():
        torch.manual_seed(0)
        model = Tagger().double()
        return model, torch.optim.Adam(model.parameters(), lr=1e-2)
    (eager, opt_e), (comp, opt_c) = make(), make()      # optimizers made before the conversion
    eager, comp = ft.convert(eager), ft.convert(comp)
    assert type(comp.gru) is ft.GRU and type(comp.cell) is ft.RNNCell
    step = torch.compile(comp, fullgraph=True)
    g = torch.Generator().manual_seed(1)
    tokens, targets = torch.randint(0, 20, (3, 7), generator=g), torch.randint(0, 20, (3, 7), generator=g)
    for _ in range(3):
        losses = []
        for model, opt in ((eager, opt_e), (step, opt_c)):
            opt.zero_grad()
            loss = model(tokens, targets)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert abs(losses[1] - losses[0]) <= 1e-9 * abs(losses[0]), losses
    for (name, p), q in zip(eager.named_parameters(), comp.parameters()):
        assert rel_err(q, p) <= 1e-9, name


def test_inference_mode_and_export():
    """torch.inference_mode() takes the eager path without autograd; torch.export traces the
    operators (through Dynamo, as compile does) into a program that computes the same."""
    torch.manual_seed(0)
    m = ft.GRU(3, 4, num_layers=2, bidirectional=True)
    x = torch.randn(5, 2, 3)
    with torch.inference_mode():
        out = m(x)[0]
    assert out.is_inference() and torch.equal(out, m(x)[0])
    program = torch.export.export(m, (x,))
    assert any("fastrnn" in str(n.target) for n in program.graph.nodes)
    assert torch.equal(program.module()(x)[0], m(x)[0])
