"""Speech engines: Piper (neural, ONNX) and espeak-ng (formant synthesis, zero weights).

Every method here blocks; the binding runs them on its worker threads. Piper and onnxruntime
are imported inside `PiperEngine.load`, never when this module is imported.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import tempfile
import threading
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lollms_server.sdk import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    InvalidRequest,
    MissingDependency,
)

from .catalog import Entry
from .formats import Pcm

log = logging.getLogger(__name__)
ESPEAK_BASE_WPM = 175
ESPEAK_TIMEOUT_S = 120.0
#: Longest run of phonemes given to Piper's ONNX model at once: a run's memory grows with the
#: audio it makes (about 1 MB a phoneme), and espeak-ng only ends a sentence at punctuation.
MAX_PHONEMES = 400
WAV_MAX = 32767.0
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class SpeechOptions:
    """What one tts request asks of an engine."""

    text: str
    speed: float = 1.0
    speaker: int | None = None
    espeak_voice: str = "en-us"
    noise_scale: float | None = None  # Piper's generator noise (None: the voice's own)
    noise_w_scale: float | None = None  # Piper's phoneme-width noise (None: the voice's own)
    #: set when the request ended (client gone, time limit): Piper stops before its next run
    stop: threading.Event = field(default_factory=threading.Event, compare=False, repr=False)


def speakable(text: str) -> str:
    """`text` with control characters as spaces: they have no sound, and a NUL stops espeak-ng."""
    return CONTROL.sub(" ", text).strip()


class PiperEngine:
    """A loaded Piper voice."""

    engine = "piper"

    def __init__(self, entry: Entry, voice: Any, providers: list[str]) -> None:
        self.entry = entry
        self.voice: Any = voice
        self.providers = providers
        self.lock = threading.Lock()

    @classmethod
    def load(cls, entry: Entry, *, device: str, threads: int) -> PiperEngine:
        """Open the voice's ONNX session (CPU, or CUDA when asked and available)."""
        try:
            import onnxruntime
            from piper import PiperVoice
            from piper.config import PiperConfig
        except ImportError as exc:
            raise MissingDependency(
                f"Piper voices need piper-tts: pip install piper-tts ({exc})"
            ) from exc
        assert entry.path is not None and entry.config_path is not None
        providers = ["CPUExecutionProvider"]
        if device in ("cuda", "auto"):
            if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
                providers.insert(0, "CUDAExecutionProvider")
            elif device == "cuda":
                raise BackendUnavailable(
                    "device = 'cuda' but onnxruntime has no CUDA provider: "
                    "pip install onnxruntime-gpu, or set device = 'auto'"
                )
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        config = PiperConfig.from_dict(json.loads(entry.config_path.read_text(encoding="utf-8")))
        session = onnxruntime.InferenceSession(
            str(entry.path), sess_options=options, providers=providers
        )
        return cls(entry, PiperVoice(session=session, config=config), providers)

    def speak(self, options: SpeechOptions) -> Pcm:
        """Synthesize `options.text`: each sentence in runs of at most `MAX_PHONEMES`, joined."""
        from piper.config import SynthesisConfig

        voice = self.voice
        if voice is None:
            raise BackendUnavailable(f"voice {self.entry.name!r} was unloaded")
        base = float(getattr(voice.config, "length_scale", None) or 1.0)
        config = SynthesisConfig(
            speaker_id=options.speaker,
            length_scale=base / options.speed,
            noise_scale=options.noise_scale,
            noise_w_scale=options.noise_w_scale,
        )
        with self.lock:
            runs = [
                run for sentence in voice.phonemize(options.text) for run in phoneme_runs(sentence)
            ]
            pieces = []
            for run in runs:
                if options.stop.is_set():
                    raise BackendTimeout("speech stopped: its request ended")
                pieces.append(_samples(voice, run, config))
            data = b"".join(pieces)
        if not data:
            raise InvalidRequest("the text has nothing to speak", param="input")
        return Pcm(data, int(voice.config.sample_rate), 1)

    def close(self) -> None:
        """Drop the ONNX session."""
        self.voice = None


def phoneme_runs(phonemes: list[str], limit: int = MAX_PHONEMES) -> list[list[str]]:
    """A sentence's phonemes cut into runs of at most `limit`, after a word where one ends."""
    runs: list[list[str]] = []
    while len(phonemes) > limit:
        cut = next((i for i in range(limit, limit // 2, -1) if phonemes[i - 1] == " "), limit)
        runs.append(phonemes[:cut])
        phonemes = phonemes[cut:]
    return [*runs, phonemes] if phonemes else runs


def _samples(voice: Any, phonemes: list[str], config: Any) -> bytes:
    """16-bit samples of one run, normalized and clipped as `PiperVoice.synthesize` does."""
    import numpy as np

    audio = voice.phoneme_ids_to_audio(voice.phonemes_to_ids(phonemes), config)
    peak = np.max(np.abs(audio)) if audio.size else 0.0
    audio = audio / peak if peak >= 1e-8 else np.zeros_like(audio)
    audio = np.clip(audio, -1.0, 1.0).astype(np.float32)
    return bytes(np.clip(audio * WAV_MAX, -WAV_MAX, WAV_MAX).astype(np.int16).tobytes())


class EspeakEngine:
    """The espeak-ng program, run once per request."""

    engine = "espeak-ng"

    def __init__(self, entry: Entry) -> None:
        self.entry = entry
        self.executable: str | None = str(entry.path) if entry.path else None
        self.languages: frozenset[str] = frozenset()
        self.variants: frozenset[str] = frozenset()

    @classmethod
    def load(cls, entry: Entry) -> EspeakEngine:
        """Check that the program runs and read its voice list."""
        engine = cls(entry)
        # a voice is named by its language (fr-fr) or its file (roa/fr: fr), as `-v` takes it
        engine.languages = engine._voice_names("--voices", 1, 4)
        engine.variants = engine._voice_names("--voices=variant", 4)
        if not engine.languages:
            raise BackendError("espeak-ng lists no voices")
        return engine

    def _voice_names(self, option: str, *columns: int) -> frozenset[str]:
        listing = [line.split() for line in self._run([option], timeout=10).stdout.splitlines()[1:]]
        names = (row[column] for row in listing for column in columns if len(row) > column)
        return frozenset(name.rsplit("/", 1)[-1].lower() for name in names)

    def check_voice(self, voice: str) -> None:
        """A 400 unless `voice` is an espeak-ng language, optionally `+variant`."""
        base, _, variant = voice.lower().partition("+")
        if base not in self.languages or (variant and variant not in self.variants):
            some = ", ".join(sorted(self.languages)[:12])
            raise InvalidRequest(
                f"espeak-ng has no voice {voice!r}; languages include {some}... "
                "(optionally +variant, e.g. en-us+f3)",
                param="voice",
            )

    def speak(self, options: SpeechOptions) -> Pcm:
        """Speak through `espeak-ng -w` into a temporary WAV file, then read it."""
        self.check_voice(options.espeak_voice)
        wpm = max(80, min(int(ESPEAK_BASE_WPM * options.speed), 700))
        with tempfile.TemporaryDirectory(prefix="lollms-espeak-") as folder:
            text_file = Path(folder) / "input.txt"
            wav_file = Path(folder) / "speech.wav"
            text_file.write_text(options.text, encoding="utf-8")
            args = ["-v", options.espeak_voice, "-s", str(wpm), "-w", str(wav_file)]
            result = self._run([*args, "-f", str(text_file)], timeout=ESPEAK_TIMEOUT_S)
            if result.returncode != 0 or not wav_file.is_file() or wav_file.stat().st_size <= 44:
                problem = (result.stderr or result.stdout).strip() or "no output"
                raise BackendError(f"espeak-ng made no audio: {problem}")
            with wave.open(str(wav_file), "rb") as reader:
                if reader.getsampwidth() != 2:
                    raise BackendError("espeak-ng wrote a WAV that is not 16-bit")
                frames = reader.readframes(reader.getnframes())
                return Pcm(frames, reader.getframerate(), reader.getnchannels())

    def _run(self, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        if self.executable is None:
            raise BackendUnavailable("espeak-ng is not installed (apt-get install espeak-ng)")
        try:
            return subprocess.run(
                [self.executable, *args],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except FileNotFoundError as exc:
            raise BackendUnavailable(f"espeak-ng is gone from {self.executable}") from exc
        except subprocess.TimeoutExpired as exc:
            raise BackendError(f"espeak-ng took longer than {timeout}s") from exc

    def close(self) -> None:
        """Nothing is held between requests."""
