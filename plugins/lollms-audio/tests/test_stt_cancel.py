"""A transcription whose request ended (client gone, time limit) stops between segments.

faster-whisper decodes 30-second windows lazily; consuming them all after the client left kept
a CPU busy and the model's lock held for as long as the whole file takes (35 s more for 83 s
of speech on 2 cores), delaying every other transcription.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from lollms_audio import AudioBinding
from lollms_audio.formats import Pcm, wav_bytes

from lollms_server.bindings import GenerationRequest, InputItem
from lollms_server.testing import started_binding

from .conftest import WHISPER, silence


def transcription(audio: bytes) -> GenerationRequest:
    """An stt request for the packaged whisper model."""
    item = InputItem("audio", role="input_audio", data=audio, mime_type="audio/wav")
    return GenerationRequest("stt", WHISPER, (), inputs=(item,))


async def test_a_cancelled_transcription_stops_at_its_next_segment(
    model_folders: dict[str, list[str]], say_pcm: Callable[[str], Pcm], packaged: None
) -> None:
    spoken = say_pcm("The quick brown fox jumps over the lazy dog.")
    gap = silence(0.5, spoken.rate)
    long = wav_bytes(Pcm((spoken.data + gap) * 120, spoken.rate, 1))  # about five minutes
    async with started_binding(AudioBinding, "audio", model_folders) as binding:
        assert isinstance(binding, AudioBinding)
        short = transcription(wav_bytes(spoken))
        started = time.monotonic()
        await binding.generate(short)  # loads the model
        alone = time.monotonic() - started
        task = asyncio.create_task(binding.generate(transcription(long)))
        await asyncio.sleep(1.0)  # into the first window
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        started = time.monotonic()
        result = await binding.generate(short)  # waits for the model's lock
        assert "fox" in (result.outputs[0].text or "")
        waited = time.monotonic() - started
        # the whole file is ten windows (177 s before the fix); stopping after the one under way
        # takes about one (12-21 s on a loaded 2-core box): the bound leaves room for the load
        assert waited < 60 + alone, f"waited {waited:.1f}s for a cancelled transcription"
