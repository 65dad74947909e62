"""Neural building blocks shared by the audio encoder and the motion tokenizer."""

from .causal_conv import CausalConvBlock, CausalConvStack

__all__ = ["CausalConvBlock", "CausalConvStack"]
