"""A request naming no model gets the default of its generation type: the answer and the log
name the model that ran (a real server process, real Piper and faster-whisper)."""

from __future__ import annotations

import base64
import json
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lollms_server.testing.process import ServerProcess, lollms_process, toml_table

from .conftest import HELLO, VOICE, WHISPER, words


def generate(server: ServerProcess, body: dict[str, Any]) -> dict[str, Any]:
    """POST /api/v1/generate and return the JSON answer."""
    request = urllib.request.Request(
        f"{server.url}/api/v1/generate",
        json.dumps(body).encode(),
        {"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as reply:
        answer: dict[str, Any] = json.load(reply)
        return answer


def test_stt_and_tts_without_model_name_name_what_ran(
    model_folders: dict[str, list[str]],
    packaged: None,
    say: Callable[[str], bytes],
    tmp_path: Path,
) -> None:
    config = toml_table("bindings.audio", {"type": "audio", **model_folders}) + toml_table(
        "defaults", {"tts": "audio", "stt": "audio"}
    )
    with lollms_process(tmp_path, config) as server:
        audio = base64.b64encode(say(HELLO)).decode("ascii")
        heard = generate(
            server,
            {"generation_type": "stt",
             "input_data": [{"type": "audio", "role": "input_audio", "data": audio,
                             "mime_type": "audio/wav"}]},
        )  # fmt: skip
        spoken = generate(
            server, {"generation_type": "tts", "input_data": [{"type": "text", "data": HELLO}]}
        )
        log = server.log()
    assert heard["model_name"] == WHISPER, heard["model_name"]
    assert heard["output"][0]["metadata"]["model"] == WHISPER
    assert words(heard["output"][0]["data"]) == ["hello", "world"]
    assert spoken["model_name"] == VOICE
    stt_lines = [line for line in log.splitlines() if heard["request_id"] in line]
    assert stt_lines and all(VOICE not in line for line in stt_lines), stt_lines
    assert any(WHISPER in line for line in stt_lines), stt_lines
