"""One-frame-at-a-time inference over the weights of a ``transformers`` ``Qwen2Model``.

Streaming runs the backbone on one new position per video frame. Calling
``Qwen2Model.forward`` with a ``DynamicCache`` for that costs about twice the
arithmetic in per-call work (mask construction, cache bookkeeping, config look-ups,
~40 module calls). :class:`Qwen2Stepper` computes the same function (Qwen2:
RMSNorm, q/k/v projections with RoPE, grouped-query attention over a sliding
window, SwiGLU MLP; Meta, arXiv 2510.01176, sec. 3: windowed causal attention
with RoPE) directly from the model's weights with its own bounded key/value
buffers: the same outputs to float rounding (tested against ``Qwen2Model``),
in roughly half the time on one CPU core. Training still uses ``Qwen2Model``.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


class Qwen2Stepper:
    """Incremental single-position forward of a ``Qwen2Model`` (eval mode, no dropout).

    The weights are snapshotted (q/k/v and gate/up projections concatenated) when it is made.

    Args:
        model: a ``transformers`` ``Qwen2Model`` with default RoPE, SiLU MLP and sliding-window
            attention on every layer.

    Raises:
        ValueError: the model uses another RoPE type, activation, or full-attention layers.
    """

    def __init__(self, model: torch.nn.Module):
        c = model.config
        rope_type = (getattr(c, "rope_parameters", None) or {}).get("rope_type", "default")
        if rope_type != "default" or c.hidden_act != "silu":
            raise ValueError(f"Qwen2Stepper supports default RoPE and SiLU, got {rope_type}, {c.hidden_act}")
        if any(t != "sliding_attention" for t in getattr(c, "layer_types", None) or []) or not c.use_sliding_window:
            raise ValueError("Qwen2Stepper needs sliding-window attention on every layer")
        self.window = c.sliding_window
        self.heads, self.kv_heads = c.num_attention_heads, c.num_key_value_heads
        self.head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        self.eps = c.rms_norm_eps
        self.inv_freq = model.rotary_emb.inv_freq.detach().float()
        self.rope_scale = float(model.rotary_emb.attention_scaling)
        self.final_norm = model.norm.weight.detach()
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        self.splits = (q, kv, kv)
        self.layers = []
        for layer in model.layers:
            a, m = layer.self_attn, layer.mlp
            bias = [p.bias.detach() if p.bias is not None else torch.zeros(p.out_features)
                    for p in (a.q_proj, a.k_proj, a.v_proj)]
            self.layers.append((
                layer.input_layernorm.weight.detach(),
                torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]).detach(),
                torch.cat(bias),
                a.o_proj.weight.detach(),
                a.o_proj.bias.detach() if a.o_proj.bias is not None else None,
                float(a.scaling),
                layer.post_attention_layernorm.weight.detach(),
                torch.cat([m.gate_proj.weight, m.up_proj.weight]).detach(),
                m.down_proj.weight.detach(),
            ))
        self.reset()

    def reset(self) -> None:
        """Empty the key/value buffers; the next position is 0."""
        self.keys: list[torch.Tensor | None] = [None] * len(self.layers)
        self.values: list[torch.Tensor | None] = [None] * len(self.layers)
        self.position = 0

    @property
    def cached(self) -> int:
        """Positions held in the key/value buffers: at most ``window`` (bounded memory for endless streams)."""
        return 0 if self.keys[0] is None else self.keys[0].shape[1]

    def _rms(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (D,) or (B, D) float32 input embedding(s) of the next position -> the final hidden state(s)
        of that position, same shape (``Qwen2Model(...).last_hidden_state``). With (B, D) the B rows are
        independent sequences stepped together (e.g. the generator's lip particles); keep B fixed
        between :meth:`reset` calls."""
        single = x.dim() == 1
        x = x[None] if single else x  # (B, D)
        b = x.shape[0]
        freqs = self.position * self.inv_freq
        emb = torch.cat([freqs, freqs])
        cos, sin = emb.cos() * self.rope_scale, emb.sin() * self.rope_scale
        half, hd = self.head_dim // 2, self.head_dim
        group = self.heads // self.kv_heads
        keep = self.window - 1
        for i, (ln1, w_qkv, b_qkv, w_o, b_o, scaling, ln2, w_gu, w_down) in enumerate(self.layers):
            q, k, v = F.linear(self._rms(x, ln1), w_qkv, b_qkv).split(self.splits, -1)
            qk = torch.cat([q.view(b, self.heads, hd), k.view(b, self.kv_heads, hd)], 1)
            qk = qk * cos + torch.cat([-qk[..., half:], qk[..., :half]], -1) * sin  # RoPE (rotate_half)
            q, k = qk[:, : self.heads], qk[:, self.heads :].reshape(b * self.kv_heads, 1, hd)
            v = v.reshape(b * self.kv_heads, 1, hd)
            if self.keys[i] is not None:
                k = torch.cat([self.keys[i][:, -keep:] if keep else self.keys[i][:, :0], k], 1)
                v = torch.cat([self.values[i][:, -keep:] if keep else self.values[i][:, :0], v], 1)
            self.keys[i], self.values[i] = k, v  # (B * kv_heads, <= window, hd)
            att = torch.softmax(torch.bmm(q.reshape(b * self.kv_heads, group, hd), k.transpose(1, 2)) * scaling, -1)
            x = x + F.linear(torch.bmm(att, v).reshape(b, -1), w_o, b_o)
            gate, up = F.linear(self._rms(x, ln2), w_gu).chunk(2, -1)
            x = x + F.linear(F.silu(gate) * up, w_down)
        self.position += 1
        out = self._rms(x, self.final_norm)
        return out[0] if single else out
