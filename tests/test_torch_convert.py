"""fastrnn.torch.convert / to_torch: parameters shared, an optimizer made before conversion keeps
training to torch's losses, state_dict round trips, unconvertible modules named in one warning."""
import warnings

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import fastrnn.torch as ft  # noqa: E402


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(3, 4), nn.Tanh())
        self.rnns = nn.ModuleDict({"gru": nn.GRU(4, 5, num_layers=2, bidirectional=True, batch_first=True),
                                   "rnn": nn.RNN(10, 3, nonlinearity="relu", batch_first=True)})
        self.head = nn.Linear(3, 1)

    def forward(self, x):
        h, _ = self.rnns["gru"](self.enc(x))
        h, h_n = self.rnns["rnn"](h)
        return self.head(h).sum() + h_n.pow(2).sum()


def _train(model, opt, x, steps=4):
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = model(x)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_convert_nested_keeps_optimizer_and_matches_torch():
    torch.manual_seed(0)
    ref = Net().double()
    model = Net().double()
    model.load_state_dict(ref.state_dict())
    opt_ref = torch.optim.Adam(ref.parameters(), lr=1e-2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)        # made BEFORE the conversion
    params_before = list(model.parameters())
    new = ft.convert(model)
    assert isinstance(new.rnns["gru"], ft.GRU) and isinstance(new.rnns["rnn"], ft.RNN)
    assert isinstance(model.rnns["gru"], nn.GRU)                 # inplace=False: the original is untouched
    assert all(a is b for a, b in zip(new.parameters(), params_before))
    assert list(new.state_dict()) == list(ref.state_dict())
    x = torch.randn(3, 6, 3, dtype=torch.float64)
    a, b = _train(ref, opt_ref, x), _train(new, opt, x)
    for la, lb in zip(a, b):
        assert abs(la - lb) <= 1e-9 * max(1.0, abs(la)), (a, b)
    for (k, p), (_, q) in zip(ref.named_parameters(), new.named_parameters()):
        assert (p - q).abs().max() <= 1e-9, k


def test_convert_inplace_root_and_back():
    torch.manual_seed(1)
    gru = nn.GRU(3, 4)
    twin = ft.convert(gru)
    assert type(twin) is ft.GRU and twin.weight_ih_l0 is gru.weight_ih_l0
    back = ft.to_torch(twin)
    assert type(back) is nn.GRU and back.weight_hh_l0 is gru.weight_hh_l0
    x = torch.randn(5, 2, 3)
    assert torch.allclose(back(x)[0], gru(x)[0])
    seq = nn.Sequential(nn.Linear(3, 3), nn.RNN(3, 2))
    out = ft.convert(seq, inplace=True)
    assert out is seq and isinstance(seq[1], ft.RNN)
    assert isinstance(ft.to_torch(seq, inplace=True)[1], nn.RNN)


def test_state_dict_round_trip_strict():
    torch.manual_seed(2)
    f = ft.GRU(3, 4, num_layers=2, bidirectional=True, bias=True)
    t = nn.GRU(3, 4, num_layers=2, bidirectional=True)
    t.load_state_dict(f.state_dict(), strict=True)
    f2 = ft.GRU(3, 4, num_layers=2, bidirectional=True)
    f2.load_state_dict(t.state_dict(), strict=True)
    x = torch.randn(4, 2, 3)
    assert torch.allclose(f2(x)[0], t(x)[0], atol=1e-6)
    assert torch.equal(f(x)[0], f2(x)[0])


def test_unconvertible_listed_in_one_warning():
    m = nn.Sequential(nn.LSTM(3, 3), nn.LSTMCell(3, 3), nn.GRU(3, 3), nn.GRU(3, 3).half(), nn.GRUCell(3, 3))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        new = ft.convert(m)
    assert len(w) == 1
    msg = str(w[0].message)
    assert "LSTM " in msg and "LSTMCell" in msg and "float16" in msg and "GRUCell" not in msg
    assert type(new[0]) is nn.LSTM and type(new[2]) is ft.GRU and type(new[3]) is nn.GRU
    assert type(new[4]) is ft.GRUCell
    with pytest.warns(UserWarning, match="reset_after=False"):
        ft.to_torch(ft.GRU(3, 3, reset_after=False))


def test_convert_does_not_repeat_torch_warnings():
    with pytest.warns(UserWarning):
        gru = nn.GRU(3, 3, dropout=0.2)          # torch warns: dropout with num_layers=1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        twin = ft.convert(gru)
        ft.to_torch(twin)
    assert twin.dropout == 0.2
