"""fastrnn.torch.GRUCell / fastrnn.torch.RNNCell: torch.nn.GRUCell / torch.nn.RNNCell (one step) on
fastrnn's kernels, with torch's constructor, parameter names, shapes and initialisation.

    cell = fastrnn.torch.GRUCell(input_size, hidden_size, bias=True, device=None, dtype=None,
                                 reset_after=True)
    cell = fastrnn.torch.RNNCell(input_size, hidden_size, bias=True, nonlinearity="tanh",
                                 device=None, dtype=None)
    h_next = cell(input, hx=None)     # input (B, I) -> (B, H); unbatched (I,) -> (H,)

One step runs the layer's kernels with T = 1 (`_step.step`: its own autograd.Function in eager mode,
the layer's operator under torch.compile), so a cell unrolled over T steps computes what
fastrnn.torch.GRU / RNN computes (to rounding) and autograd backpropagates through the loop as it
does through torch's cells. Parameters are registered as torch
registers them (bias_ih / bias_hh are None without bias). Devices and dtypes the kernels do not
cover run torch's own cell with one warning, as the layers do (modules.py).
"""
import torch
from torch import nn

from . import _step
from .._validation import check
from .modules import ArgumentError, check_constructor, check_tensor, on_fast_path, reset_parameters

__all__ = ["GRUCell", "RNNCell"]


class _CellBase(nn.Module):
    _gates = None

    def __init__(self, input_size, hidden_size, bias, device, dtype):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        check_constructor((("input_size", input_size), ("hidden_size", hidden_size)), dtype)
        self.input_size, self.hidden_size, self.bias = int(input_size), int(hidden_size), bool(bias)
        G, H = self._gates, self.hidden_size
        self.weight_ih = nn.Parameter(torch.empty((G * H, self.input_size), **factory))
        self.weight_hh = nn.Parameter(torch.empty((G * H, H), **factory))
        if self.bias:
            self.bias_ih = nn.Parameter(torch.empty(G * H, **factory))
            self.bias_hh = nn.Parameter(torch.empty(G * H, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    reset_parameters = reset_parameters

    def extra_repr(self):
        s = "{input_size}, {hidden_size}"
        if self.bias is not True:
            s += ", bias={bias}"
        return (s + self._extra_options()).format(**self.__dict__)

    def _extra_options(self):
        return ""

    def _cell(self):
        """("gru", reset_after) or ("rnn", nonlinearity): the kernel and its option (_step)."""
        raise NotImplementedError

    def _torch_step(self, input, hx, w_ih, w_hh, b_ih, b_hh):
        raise NotImplementedError

    def forward(self, input, hx=None):
        p = self._parameters
        w_ih, w_hh, b_ih, b_hh = p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"]
        if not on_fast_path(self, w_ih):
            return self._torch_step(input, hx, w_ih, w_hh, b_ih, b_hh)
        check_tensor("input", input, w_ih)
        batched = input.dim() == 2
        if not batched and input.dim() != 1:
            raise ArgumentError(f"input: expected a 1-D (unbatched) or 2-D (batched) tensor, got shape "
                                f"{tuple(input.shape)}")
        if input.shape[-1] != self.input_size:
            raise ArgumentError(f"input: expected input_size={self.input_size} features, got {input.shape[-1]}")
        if hx is not None:
            check_tensor("hx", hx, w_ih)
            expected = (input.shape[0], self.hidden_size) if batched else (self.hidden_size,)
            if hx.shape != expected:
                raise ArgumentError(f"hx: expected shape {expected}, got {tuple(hx.shape)}")
        need_cache = torch.is_grad_enabled() and (
            input.requires_grad or (hx is not None and hx.requires_grad) or w_ih.requires_grad or
            w_hh.requires_grad or (b_ih is not None and (b_ih.requires_grad or b_hh.requires_grad)))
        # every torch view costs a microsecond here: none for a batched call
        if batched:
            return _step.step(self._cell(), input, hx, w_ih, w_hh, b_ih, b_hh, need_cache)
        h = _step.step(self._cell(), input.unsqueeze(0), None if hx is None else hx.unsqueeze(0), w_ih, w_hh, b_ih,
                       b_hh, need_cache)
        return h.view(-1)


class GRUCell(_CellBase):
    """torch.nn.GRUCell on fastrnn's kernels; reset_after=False (Cho et al. 2014) goes beyond torch."""

    _gates = 3

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None, reset_after=True):
        self.reset_after = check("reset_after", reset_after)
        super().__init__(input_size, hidden_size, bias, device, dtype)

    def _cell(self):
        return "gru", self.reset_after

    def _torch_step(self, input, hx, w_ih, w_hh, b_ih, b_hh):
        if not self.reset_after:
            raise ValueError(f"reset_after=False: only on fastrnn's kernels (CPU float32/float64); the "
                             f"parameters are on {w_ih.device} with dtype {w_ih.dtype}")
        return nn.GRUCell.forward(self, input, hx)

    def _extra_options(self):
        return "" if self.reset_after else ", reset_after=False"


class RNNCell(_CellBase):
    """torch.nn.RNNCell (Elman; tanh or relu) on fastrnn's kernels."""

    _gates = 1

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", device=None, dtype=None):
        self.nonlinearity = check("nonlinearity", nonlinearity)
        super().__init__(input_size, hidden_size, bias, device, dtype)

    def _cell(self):
        return "rnn", self.nonlinearity

    def _torch_step(self, input, hx, w_ih, w_hh, b_ih, b_hh):
        return nn.RNNCell.forward(self, input, hx)

    def _extra_options(self):
        return "" if self.nonlinearity == "tanh" else ", nonlinearity={nonlinearity}"
