"""Speech recognition engines: faster-whisper (CTranslate2) and, optionally, transformers.

Every method here blocks; the binding runs them on its worker threads. faster_whisper,
ctranslate2 and transformers are imported inside `load`, never when this module is imported.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

from lollms_server.sdk import BackendTimeout, BackendUnavailable, InvalidRequest, MissingDependency

from .catalog import Entry
from .formats import decode

LANGUAGE = re.compile(r"^[a-z]{2,3}$")
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


@dataclass(frozen=True)
class TranscribeOptions:
    """What one stt request asks of an engine."""

    language: str | None = None
    task: str = "transcribe"
    prompt: str | None = None
    temperature: float | None = None
    beam_size: int = 5
    word_timestamps: bool = True
    vad_filter: bool = False
    max_audio_s: float | None = None
    #: set when the request ended (client gone, time limit): whisper stops before its next segment
    stop: threading.Event = field(default_factory=threading.Event, compare=False, repr=False)


class Recognizer(Protocol):
    """A loaded speech recognizer."""

    entry: Entry

    def transcribe(self, audio: bytes, options: TranscribeOptions) -> dict[str, Any]:
        """Text plus metadata (language, duration, segments, words)."""

    def close(self) -> None:
        """Free the model."""


def check_language(entry: Entry, language: str | None) -> str | None:
    """A lower-case language code the model can use, or a 400 saying why not."""
    if language is None:
        return None
    code = language.strip().lower()
    if not LANGUAGE.match(code):
        raise InvalidRequest(
            f"language {language!r} is not an ISO-639-1 code such as 'en'", param="language"
        )
    if not entry.multilingual and code != "en":
        raise InvalidRequest(
            f"model {entry.name!r} is English-only; language {code!r} needs a multilingual "
            "whisper model",
            param="language",
        )
    return code


class WhisperEngine:
    """A CTranslate2 whisper model run by faster-whisper."""

    engine = "faster-whisper"

    def __init__(self, entry: Entry, model: Any, device: str) -> None:
        self.entry = entry
        self.model: Any = model
        self.device = device
        self.lock = threading.Lock()

    @classmethod
    def load(cls, entry: Entry, *, device: str, compute_type: str, threads: int) -> WhisperEngine:
        """Load the model on the CPU or (when asked and present) a CUDA GPU."""
        try:
            import ctranslate2
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise MissingDependency(
                f"whisper models need faster-whisper: pip install faster-whisper ({exc})"
            ) from exc
        has_gpu = ctranslate2.get_cuda_device_count() > 0
        if device == "cuda" and not has_gpu:
            raise BackendUnavailable("device = 'cuda' but CTranslate2 sees no CUDA GPU")
        chosen = "cuda" if device == "cuda" or (device == "auto" and has_gpu) else "cpu"
        if compute_type == "auto":
            compute_type = "float16" if chosen == "cuda" else "int8"
        model = WhisperModel(
            str(entry.path),
            device=chosen,
            compute_type=compute_type,
            cpu_threads=threads,
            num_workers=1,
            local_files_only=True,
        )
        return cls(entry, model, chosen)

    def transcribe(self, audio: bytes, options: TranscribeOptions) -> dict[str, Any]:
        """Decode (PyAV, any rate, at most `max_audio_s`) and transcribe; segments are consumed
        under the lock."""
        import numpy
        from faster_whisper.tokenizer import _LANGUAGE_CODES

        model = self.model
        if model is None:
            raise BackendUnavailable(f"model {self.entry.name!r} was unloaded")
        if options.language and options.language not in _LANGUAGE_CODES:
            raise InvalidRequest(
                f"whisper knows no language {options.language!r}", param="language"
            )
        temperature: tuple[float, ...] = FALLBACK_TEMPERATURES
        if options.temperature is not None:
            higher = tuple(t for t in FALLBACK_TEMPERATURES if t > options.temperature)
            temperature = (options.temperature, *higher)
        pcm = decode(audio, rate=16000, channels=1, max_s=options.max_audio_s)
        samples = numpy.frombuffer(pcm.data, dtype="<i2").astype(numpy.float32) / 32768.0
        with self.lock:
            segments, info = model.transcribe(
                samples,
                language=options.language,
                task=options.task,
                initial_prompt=options.prompt or None,
                temperature=list(temperature),
                beam_size=options.beam_size,
                word_timestamps=options.word_timestamps,
                vad_filter=options.vad_filter,
            )
            done = []
            for segment in segments:  # decoded lazily, window by window
                if options.stop.is_set():
                    raise BackendTimeout("transcription stopped: its request ended")
                done.append(segment)
        words = [
            {
                "word": word.word.strip(),
                "start": round(float(word.start), 3),
                "end": round(float(word.end), 3),
                "probability": round(float(word.probability), 4),
            }
            for segment in done
            for word in segment.words or ()
        ]
        metadata: dict[str, Any] = {
            "language": info.language,
            "language_probability": round(float(info.language_probability), 4),
            "duration": round(float(info.duration), 3),
            "duration_after_vad": round(float(info.duration_after_vad), 3),
            "segments": [
                {
                    "start": round(float(s.start), 3),
                    "end": round(float(s.end), 3),
                    "text": s.text,
                    "tokens": [int(t) for t in s.tokens],
                    "avg_logprob": float(s.avg_logprob),
                    "compression_ratio": float(s.compression_ratio),
                    "no_speech_prob": float(s.no_speech_prob),
                }
                for s in done
            ],
        }
        if options.word_timestamps:
            metadata["words"] = words
        text = "".join(s.text for s in done).strip()
        return {"text": text, "metadata": metadata}

    def close(self) -> None:
        """Drop the CTranslate2 model."""
        self.model = None


class TransformersWhisperEngine:
    """A transformers-format whisper checkpoint through the ASR pipeline (16 kHz arrays)."""

    engine = "transformers"

    def __init__(self, entry: Entry, pipe: Any) -> None:
        self.entry = entry
        self.pipe: Any = pipe
        self.lock = threading.Lock()

    @classmethod
    def load(cls, entry: Entry, *, device: str) -> TransformersWhisperEngine:
        """Build the pipeline from the local folder (never a hub download)."""
        try:
            import torch
            from transformers import pipeline
        except ImportError as exc:
            raise MissingDependency(
                f"transformers-format whisper models need: pip install torch transformers ({exc})"
            ) from exc
        use_gpu = device in ("cuda", "auto") and torch.cuda.is_available()
        if device == "cuda" and not use_gpu:
            raise BackendUnavailable("device = 'cuda' but torch sees no CUDA GPU")
        pipe = pipeline(
            "automatic-speech-recognition",
            model=str(entry.path),
            device="cuda" if use_gpu else "cpu",
        )
        return cls(entry, pipe)

    def transcribe(self, audio: bytes, options: TranscribeOptions) -> dict[str, Any]:
        """Decode to 16 kHz mono floats ourselves, then run the pipeline (segment times)."""
        import numpy

        pipe = self.pipe
        if pipe is None:
            raise BackendUnavailable(f"model {self.entry.name!r} was unloaded")
        pcm = decode(audio, rate=16000, channels=1, max_s=options.max_audio_s)
        samples = numpy.frombuffer(pcm.data, dtype="<i2").astype(numpy.float32) / 32768.0
        generate: dict[str, Any] = {}
        if self.entry.multilingual:
            generate["task"] = options.task
            if options.language:
                generate["language"] = options.language
        if options.temperature:
            generate.update(do_sample=True, temperature=options.temperature)
        with self.lock:
            result = pipe(
                {"raw": samples, "sampling_rate": 16000},
                return_timestamps=True,
                generate_kwargs=generate,
            )
        segments = []
        for chunk in result.get("chunks") or []:
            start, end = chunk.get("timestamp") or (None, None)
            start = min(float(start or 0.0), pcm.duration)
            end = min(max(float(end if end is not None else pcm.duration), start), pcm.duration)
            segments.append({"start": start, "end": end, "text": str(chunk.get("text", ""))})
        metadata: dict[str, Any] = {
            "language": options.language or self.entry.language,
            "duration": pcm.duration,
            "segments": segments,
        }
        return {"text": str(result.get("text", "")).strip(), "metadata": metadata}

    def close(self) -> None:
        """Drop the pipeline (model and processor)."""
        self.pipe = None
