"""FMLG (Teller's Facial Motion Latent Generation): speech -> motion tokens -> motion latent.

* :mod:`.tokenizer` - Residual-VQ motion tokenizer (mouth and head streams),
* :mod:`.model` - the autoregressive transformer (transformers' Qwen2) with a depth head,
* :mod:`.generator` - the streaming :class:`MotionGenerator` (push_audio / flush / reset),
* :mod:`.checkpoint` - safetensors checkpoints.
"""

from .checkpoint import DEFAULT_CHECKPOINT, FMLGCheckpoint, load_checkpoint, save_checkpoint
from .generator import MotionGenerator

__all__ = ["DEFAULT_CHECKPOINT", "FMLGCheckpoint", "MotionGenerator", "load_checkpoint", "save_checkpoint"]
