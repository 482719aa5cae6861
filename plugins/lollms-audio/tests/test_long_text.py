"""A long text without sentence ends is spoken in bounded runs: Piper's memory stays flat.

One ONNX run's memory grows with the audio it makes (about 1 MB a phoneme): an 18,000-character
input with no full stop, one "sentence" to Piper, took over 23 GiB and the server was killed.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import pytest
from lollms_audio.tts import MAX_PHONEMES, PiperEngine, SpeechOptions, phoneme_runs

from .conftest import STEADY_VOICE

# Loads the packaged voice in a fresh process, speaks, reports the rise of its peak RSS.
PEAK = """
import json, resource, sys
from lollms_audio.catalog import scan
from lollms_audio.tts import PiperEngine, SpeechOptions
entry = scan([], [], packaged=True, espeak=False).voices["joe-us"]
engine = PiperEngine.load(entry, device="cpu", threads=2)
engine.speak(SpeechOptions("Hello.", noise_scale=0.0, noise_w_scale=0.0))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
pcm = engine.speak(SpeechOptions(sys.argv[1], noise_scale=0.0, noise_w_scale=0.0))
rise = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({"rise_mb": rise // 1024, "seconds": pcm.duration}))
"""


@pytest.mark.usefixtures("packaged")
def test_peak_memory_does_not_grow_with_an_unpunctuated_text() -> None:
    text = "123 " * 80  # about 1,100 phonemes, all one sentence to espeak-ng
    run = subprocess.run(
        [sys.executable, "-c", PEAK, text], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-2000:]
    found = json.loads(run.stdout.splitlines()[-1])
    assert found["seconds"] > 30  # all of it was spoken
    assert found["rise_mb"] < 600, found  # one unbounded run took about 1,300 MB more


def test_runs_are_cut_after_a_word_and_keep_every_phoneme(piper: PiperEngine) -> None:
    sentences = piper.voice.phonemize("one two three four five six seven eight nine ten " * 60)
    assert len(sentences) == 1 and len(sentences[0]) > 3 * MAX_PHONEMES
    runs = phoneme_runs(sentences[0])
    assert len(runs) >= 3 and all(len(run) <= MAX_PHONEMES for run in runs)
    assert all(run[-1] == " " for run in runs[:-1])  # no word is cut in two
    assert [p for run in runs for p in run] == sentences[0]
    no_space = ["a"] * (MAX_PHONEMES * 2 + 1)
    assert [len(run) for run in phoneme_runs(no_space)] == [MAX_PHONEMES, MAX_PHONEMES, 1]


def test_a_short_sentence_is_one_run(piper: PiperEngine) -> None:
    from piper.config import SynthesisConfig

    pcm = piper.speak(SpeechOptions("Please call Stella.", **STEADY_VOICE))
    config = SynthesisConfig(**STEADY_VOICE)
    chunks = list(piper.voice.synthesize("Please call Stella.", syn_config=config))
    assert pcm.data == b"".join(chunk.audio_int16_bytes for chunk in chunks)  # as Piper says it


async def test_a_cancelled_speech_stops_at_its_next_run(
    model_folders: dict[str, list[str]], packaged: None
) -> None:
    """A client that leaves (or a time limit) cancels the request: the voice's thread stops
    before its next run instead of speaking minutes of text into the void, holding the voice."""
    from lollms_audio import AudioBinding

    from lollms_server.bindings import ChatMessage, GenerationRequest
    from lollms_server.testing import started_binding

    async with started_binding(AudioBinding, "audio", model_folders) as binding:
        assert isinstance(binding, AudioBinding)
        long = GenerationRequest("tts", "joe-us", (ChatMessage("user", "123 " * 2000),))
        task = asyncio.create_task(binding.generate(long))
        await asyncio.sleep(1.0)  # a few runs in
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        started = time.monotonic()
        short = GenerationRequest("tts", "joe-us", (ChatMessage("user", "Hello."),))
        result = await binding.generate(short)  # waits for the voice's lock
        assert result.outputs[0].data
        assert time.monotonic() - started < 10  # the whole text takes minutes
