"""`noise_scale = 0` and `noise_w_scale = 0`: Piper says the same text with the same bytes."""

from __future__ import annotations

from lollms_audio.tts import PiperEngine, SpeechOptions

from .conftest import STEADY_VOICE

TEXT = "Please call Stella."


def test_without_noise_the_same_text_gives_the_same_bytes(piper: PiperEngine) -> None:
    first = piper.speak(SpeechOptions(TEXT, **STEADY_VOICE))
    second = piper.speak(SpeechOptions(TEXT, **STEADY_VOICE))
    assert first.data == second.data and len(first.data) > 10_000
    faster = piper.speak(SpeechOptions(TEXT, speed=1.5, **STEADY_VOICE))
    assert len(faster.data) < len(first.data)  # the options still apply
