"""Small causal building blocks shared by the audio encoder and the motion tokenizer."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class CausalConvBlock(nn.Module):
    """Residual block: LayerNorm -> causal dilated Conv1d -> GELU -> Linear, on (B, T, C).

    Output frame ``t`` depends on input frames ``t - (kernel - 1) * dilation ... t`` only.
    """

    def __init__(self, channels: int, kernel: int = 3, dilation: int = 1):
        super().__init__()
        self.kernel, self.dilation = kernel, dilation
        self.pad = (kernel - 1) * dilation
        self.norm = nn.LayerNorm(channels)
        self.conv = nn.Conv1d(channels, channels, kernel, dilation=dilation)
        self.proj = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(x).transpose(1, 2)
        y = self.conv(F.pad(y, (self.pad, 0))).transpose(1, 2)
        return x + self.proj(F.gelu(y))

    def step(self, x: torch.Tensor, state: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames ``x`` (B, n, C) following the frames summarised by ``state`` (B, C, pad), None at
        the start. Returns the outputs and the new state; equals :meth:`forward` on the whole sequence
        (to float rounding).

        The convolution is computed as one matrix product of the flattened kernel with the ``kernel``
        dilated taps of each frame: for the 1-frame steps of streaming this is ~10x faster on a CPU than
        ``Conv1d`` on a 3-frame input (whose fixed per-call cost dominates)."""
        y = self.norm(x).transpose(1, 2)
        if state is None:
            state = y.new_zeros(y.shape[0], y.shape[1], self.pad)
        y = torch.cat([state, y], 2)  # (B, C, pad + n)
        b, c, n = y.shape[0], y.shape[1], x.shape[1]
        if n == 1:
            taps = y[:, :, :: self.dilation].reshape(b, 1, c * self.kernel)
        else:
            taps = y.unfold(2, self.pad + 1, 1)[..., :: self.dilation].transpose(1, 2).reshape(b, n, c * self.kernel)
        out = F.linear(taps, self.conv.weight.reshape(self.conv.out_channels, -1), self.conv.bias)
        return x + self.proj(F.gelu(out)), y[:, :, y.shape[2] - self.pad :]


class CausalConvStack(nn.Module):
    """Linear in -> residual causal conv blocks -> Linear out, on (B, T, C).

    Attributes:
        receptive_field: frames of the past (the current one included) an output sees.
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int, dilations: tuple[int, ...], kernel: int = 3):
        super().__init__()
        self.inp = nn.Linear(in_dim, hidden)
        self.blocks = nn.ModuleList(CausalConvBlock(hidden, kernel, d) for d in dilations)
        self.norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, out_dim)
        self.receptive_field = 1 + sum((kernel - 1) * d for d in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inp(x)
        for block in self.blocks:
            x = block(x)
        return self.out(self.norm(x))

    def step(self, x: torch.Tensor, state: list | None) -> tuple[torch.Tensor, list]:
        """Incremental :meth:`forward`: frames ``x`` (B, n, C) after those summarised by ``state``
        (None at the start). Returns (B, n, out) and the new state."""
        state = state or [None] * len(self.blocks)
        x = self.inp(x)
        new_state = []
        for block, s in zip(self.blocks, state):
            x, s = block.step(x, s)
            new_state.append(s)
        return self.out(self.norm(x)), new_state


class ConvStackStepper:
    """Streams a trained :class:`CausalConvStack` one frame at a time in numpy float32.

    A streamed frame of a small conv stack is a few hundred thousand multiply-adds spread over about ten
    tensor ops per block, so torch's per-op dispatch (several microseconds each) costs more than the
    arithmetic; the same weights in numpy run a frame several times faster. Outputs equal
    :meth:`CausalConvStack.step` to float rounding. ``n`` frames in one :meth:`step` read each weight
    matrix once instead of ``n`` times; their outputs equal ``n`` one-frame steps to float rounding.

    Args:
        stack: the trained stack (its weights are copied; later changes to it are not seen).
    """

    def __init__(self, stack: CausalConvStack):
        def f(t: torch.Tensor) -> np.ndarray:
            return t.detach().cpu().float().numpy()

        self.inp = (np.ascontiguousarray(f(stack.inp.weight).T), f(stack.inp.bias))
        self.blocks = []
        for b in stack.blocks:
            w = f(b.conv.weight)  # (out, in, kernel); a tap vector is (in, kernel) flattened in that order
            self.blocks.append((f(b.norm.weight), f(b.norm.bias), b.norm.eps,
                                np.ascontiguousarray(w.reshape(w.shape[0], -1).T), f(b.conv.bias),
                                np.ascontiguousarray(f(b.proj.weight).T), f(b.proj.bias), b.dilation, b.pad))
        self.norm = (f(stack.norm.weight), f(stack.norm.bias), stack.norm.eps)
        self.out = (np.ascontiguousarray(f(stack.out.weight).T), f(stack.out.bias))
        self.hidden = stack.inp.out_features

    @staticmethod
    def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
        inv = np.float32(1.0 / x.shape[-1])
        xc = x - np.add.reduce(x, -1, keepdims=True) * inv
        var = np.add.reduce(xc * xc, -1, keepdims=True) * inv
        return xc * (np.float32(1.0) / np.sqrt(var + np.float32(eps))) * weight + bias

    def step(self, x: np.ndarray, state: list | None) -> tuple[np.ndarray, list]:
        """Frames ``x`` (n, in) float32 after those summarised by ``state`` (None at the start).
        Returns (n, out) float32 and the new state (per block, the last ``pad`` normalised frames)."""
        from scipy.special import erf

        state = list(state) if state is not None else [np.zeros((blk[8], self.hidden), np.float32)
                                                       for blk in self.blocks]
        h = x.astype(np.float32, copy=False) @ self.inp[0] + self.inp[1]  # (n, hidden)
        for i, (nw, nb, eps, wc, bc, wp, bp, dilation, pad) in enumerate(self.blocks):
            hist = np.concatenate([state[i], self._layer_norm(h, nw, nb, eps)])  # (pad + n, hidden)
            if len(h) == 1:  # the live case: one frame
                taps = hist[::dilation].T.reshape(1, -1)
            else:
                taps = np.stack([hist[t : t + pad + 1 : dilation].T.reshape(-1) for t in range(len(h))])
            y = taps @ wc + bc
            y = np.float32(0.5) * y * (np.float32(1.0) + erf(y * np.float32(1 / np.sqrt(2))))  # exact GELU
            h = h + y @ wp + bp
            state[i] = hist[len(hist) - pad :]
        return (self._layer_norm(h, *self.norm) @ self.out[0] + self.out[1]).astype(np.float32), state
