"""FMLG checkpoints: a folder with ``config.json``, ``tokenizer.safetensors`` and ``generator.safetensors``.

Weights are stored in float16 (each file stays well under 25 MB) and loaded as
float32. Every failure to load raises :class:`~teller_agent.errors.CheckpointError`
naming the file and the fix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError
from ..utils.atomic import atomic_path
from .model import GeneratorConfig, MotionTokenGenerator
from .tokenizer import MotionTokenizer, TokenizerConfig

CHECKPOINT_VERSION = 1
#: The checkpoint shipped in the repository and loaded by default.
DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[2] / "models" / "fmlg-face68"

_FIX = "re-train it with `teller-agent train` or restore models/ from git"


@dataclass
class FMLGCheckpoint:
    """A trained motion tokenizer and generator, in eval mode on the CPU."""

    tokenizer: MotionTokenizer
    generator: MotionTokenGenerator | None
    info: dict = field(default_factory=dict)


#: State-dict prefix of a pretrained Whisper encoder inside the generator: loaded from its own folder
#: (TellerSettings.whisper_model_dir), never stored in the checkpoint.
_EXTERNAL_PREFIX = "audio.whisper."


def _half_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in module.state_dict().items()
            if not k.startswith(_EXTERNAL_PREFIX)}


def save_checkpoint(
    folder: str | Path, tokenizer: MotionTokenizer, generator: MotionTokenGenerator | None = None, info: dict | None = None
) -> Path:
    """Write a checkpoint folder; each file is written atomically.

    Saving a tokenizer without a generator removes any generator in the folder
    (its tokens would mean nothing to a new tokenizer); ``info`` is merged into
    the existing ``info`` otherwise."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / "config.json"
    old = json.loads(config_path.read_text()) if config_path.exists() and generator is not None else {}
    config = {
        "version": CHECKPOINT_VERSION,
        "tokenizer": tokenizer.cfg.to_dict(),
        "generator": generator.cfg.to_dict() if generator is not None else None,
        "info": {**old.get("info", {}), **(info or {})},
    }
    with atomic_path(folder / "tokenizer.safetensors") as tmp:
        save_file(_half_state(tokenizer), tmp)
    if generator is not None:
        with atomic_path(folder / "generator.safetensors") as tmp:
            save_file(_half_state(generator), tmp)
    else:
        (folder / "generator.safetensors").unlink(missing_ok=True)
    with atomic_path(config_path) as tmp:
        tmp.write_text(json.dumps(config, indent=2))
    return folder


def _load_state(module: torch.nn.Module, path: Path) -> None:
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} is missing; {_FIX}")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint file {path} is corrupt ({exc}); {_FIX}") from exc
    expected = module.state_dict()
    missing = sorted(k for k in set(expected) - set(state) if not k.startswith(_EXTERNAL_PREFIX))
    if missing:
        raise CheckpointError(f"checkpoint file {path} lacks {missing[:3]}...; it is from another model version; {_FIX}")
    for name, value in state.items():
        if name in expected and expected[name].shape != value.shape:
            raise CheckpointError(f"checkpoint file {path}: {name} has shape {tuple(value.shape)}, "
                                  f"the model expects {tuple(expected[name].shape)}; {_FIX}")
    module.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=False)


def load_checkpoint(folder: str | Path | None = None, need_generator: bool = True,
                    whisper_dir: str | Path | None = None) -> FMLGCheckpoint:
    """Load a checkpoint folder (default: :data:`DEFAULT_CHECKPOINT`).

    Args:
        folder: the checkpoint folder.
        need_generator: also load the generator (False: the tokenizer only).
        whisper_dir: for a generator trained with the Whisper audio encoder, the local Whisper model
            folder (default: ``TellerSettings().whisper_model_dir``, i.e. ``TELLER_WHISPER_MODEL_DIR``).

    Raises:
        CheckpointError: the folder or a file is missing, corrupt, or of another version, or the
            generator needs a Whisper encoder that is not configured or cannot be loaded.
    """
    folder = Path(folder) if folder is not None else DEFAULT_CHECKPOINT
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"no FMLG checkpoint at {folder} (config.json missing); {_FIX}, "
                              "or point TELLER_MODEL_DIR at a checkpoint folder")
    try:
        config = json.loads(config_path.read_text())
        version = config["version"]
        tok_cfg = TokenizerConfig.from_dict(config["tokenizer"])
        gen_cfg = GeneratorConfig.from_dict(config["generator"]) if config.get("generator") else None
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{config_path} is corrupt ({exc}); {_FIX}") from exc
    if version != CHECKPOINT_VERSION:
        raise CheckpointError(f"{folder} is checkpoint version {version}; this teller-agent reads "
                              f"version {CHECKPOINT_VERSION}; {_FIX}")
    tokenizer = MotionTokenizer(tok_cfg)
    _load_state(tokenizer, folder / "tokenizer.safetensors")
    generator = None
    if need_generator:
        if gen_cfg is None:
            raise CheckpointError(f"{folder} holds a tokenizer but no generator; train one with "
                                  "`teller-agent train generator`")
        whisper = None
        if gen_cfg.audio_encoder == "whisper":
            whisper = _whisper(folder, whisper_dir)
        generator = MotionTokenGenerator(gen_cfg, whisper)
        _load_state(generator, folder / "generator.safetensors")
        generator.eval()
    tokenizer.eval()
    return FMLGCheckpoint(tokenizer, generator, config.get("info", {}))


def _whisper(folder: Path, whisper_dir: str | Path | None) -> torch.nn.Module:
    from ..audio.whisper import load_whisper_encoder
    from ..config import TellerSettings

    path = whisper_dir if whisper_dir is not None else TellerSettings().whisper_model_dir
    if path is None:
        raise CheckpointError(f"the generator in {folder} was trained on a Whisper audio encoder; set "
                              "TELLER_WHISPER_MODEL_DIR to the local Whisper model folder it was trained with")
    try:
        return load_whisper_encoder(path)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot load the Whisper encoder for {folder} from {path}: {exc}") from exc
