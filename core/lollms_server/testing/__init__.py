"""The contract test kit: prove a binding plugin honours the plugin contract on a real backend.

Installing lollms-server installs this kit as a pytest plugin (it adds `--backend`). A
plugin's contract test file subclasses the contract mixins and says how to reach its real
backend; the mixins hold the tests, and the binding class's `capabilities` decide which apply
(a mixin for a capability the class does not declare skips, saying so).

Writing a plugin's contract tests
---------------------------------

`tests/test_contract.py` of a plugin, for a binding that talks to a backend server process::

    import shutil, subprocess
    import pytest
    from lollms_server.testing import (
        ContractSuite, UnavailableContract, backend_unavailable, free_port, wait_for_http,
    )
    from lollms_foo import FooBinding

    @pytest.fixture(scope="session")
    def backend(request):
        exe = shutil.which("foo-server") or backend_unavailable(request, "foo-server not on PATH")
        port = free_port()
        process = subprocess.Popen([exe, "--port", str(port)])
        url = f"http://127.0.0.1:{port}"
        if not wait_for_http(f"{url}/health", timeout_s=60):
            process.kill()
            backend_unavailable(request, "foo-server did not come up within 60s")
        yield url
        process.terminate()
        process.wait(10)

    class TestFoo(ContractSuite):
        binding_class = FooBinding
        model = "tiny-model"

        @pytest.fixture
        def binding_settings(self, backend):
            return {"base_url": backend}

    class TestFooDown(UnavailableContract):
        binding_class = FooBinding
        model = "tiny-model"

        @pytest.fixture
        def unavailable_settings(self):
            return {"base_url": f"http://127.0.0.1:{free_port()}"}

Run it with `pytest` (a missing backend skips) or `pytest --backend=require` (CI: a missing
backend fails). Call `backend_unavailable(request, reason)` wherever your fixtures find the
backend missing; never `pytest.skip` yourself, or CI will not notice.

Mixins (combine any; `ContractSuite` is all of them except `UnavailableContract`):

- `TextContract` (`ttt`): text comes back, usage adds up, `max_tokens` and `stop` hold, an
  unknown model raises `ModelNotFound`.
- `StreamingContract` (`ttt` + `stream`): several chunks, the same shape as `generate()`;
  `aclose()` after one chunk or cancelling the consumer returns promptly and the binding
  still answers afterwards.
- `ImageContract` (`tti`), `SpeechContract` (`tts`), `TranscriptionContract` (`stt`,
  override the `speech_sample` fixture with a `SpeechSample(audio, mime_type, words)`).
- `EmbeddingsContract` (`embeddings`), `LifecycleContract` (health, `list_models`, and with
  `load_unload` idempotent load/unload), `ServerContract` (the binding served by the real
  app: `POST /api/v1/generate`, plain and streamed; it includes `LoopContract`).
- `LoopContract`: a probe coroutine keeps ticking while the binding serves a large request
  (a long prompt, a large image or minutes of audio): the event loop that every client
  shares is never held longer than `loop_block_budget_s`.
- `TokenizerContract` (`ttt`; not in `ContractSuite`: add it when your binding implements
  `tokenize`/`detokenize`, which no capability names): token ids are a list of int,
  detokenize inverts tokenize, `special_tokens()` are ids or None, an unknown model raises
  `ModelNotFound`. Knobs: `tokenizer_text`, `exact_detokenize` [True].
- `SdkContract`: the binding's package (its `tests` folder aside) imports nothing of the core
  but `lollms_server.sdk`, the surface that stays put across releases.
- `UnavailableContract`: override `unavailable_settings` with settings pointing at a dead
  backend; health must be `down`, `list_models()` must raise `BackendUnavailable`, generate
  must raise a 5xx naming the instance, all within `unavailable_timeout_s`.

Fixtures you provide: `binding_settings` (raw settings, as in lollms.toml; default `{}`),
`unavailable_settings`, `speech_sample`. The kit builds `binding` from them (validated by
your `ConfigSchema`, started, healthy; a backend that cannot start goes through
`backend_unavailable`); override `binding` only with a `pytest_asyncio.fixture`.

Knobs (class attributes; defaults in brackets):

- every mixin: `binding_class` (required), `instance_name` ["contract"], `model` (required;
  the text model and the fallback for the per-type `image_model`, `speech_model`,
  `transcription_model`, `embedding_model`), `prompt`, `text_parameters`
  [temperature 0, seed 42], `startup_timeout_s` [60], `request_timeout_s` [120];
  `not_applicable` [{}]: suite tests that do not apply, each with the reason the report
  shows (`{"test_load_and_unload_are_idempotent": "a remote server has no load call"}`).
  A suite test set to None or redefined in your class fails collection: declare it here.
- `TextContract`: `max_tokens` [3], `stop_prompt`, `stop_sequence` ["five"],
  `unknown_model`; turn a check off (reported as a skip) with `honours_max_tokens`,
  `reports_length_finish` or `honours_stop` = False.
- `StreamingContract`: `stream_model` (a model slow enough to abandon mid-way),
  `min_stream_chunks` [2], `close_timeout_s` [5], `deterministic_text` [False: compare
  shapes only; True: the joined stream must equal generate()'s text].
- `ImageContract`: `image_prompt`, `image_parameters` [64x64], `honours_image_size` [True],
  `deterministic_images` [False; True: same seed same bytes, other seed other bytes],
  `image_seed`.
- `SpeechContract`: `speech_text`, `speech_parameters`. `TranscriptionContract`:
  `transcription_min_match` [1.0, the share of expected words the transcript must contain].
- `EmbeddingsContract`: `embedding_texts`, `embedding_tolerance` [1e-4].
- `LifecycleContract`: `lifecycle_model`, `reports_loaded` [True], `health_timeout_s` [10].
- `ServerContract`: `server_generation_type` [the first of ttt, tti, tts, ttm, ttv declared].
- `LoopContract`: `loop_generation_types` [the server contract's type], `loop_block_budget_s`
  [1.0], `large_audio_seconds` [20], `large_image_side` [256], `large_prompt_chars` [500 for
  ttt, 200-300 for the media types]; keep them small for real models.
- `UnavailableContract`: `unavailable_timeout_s` [15] bounds every call against the dead
  backend, start-up included.

The mixins mark their tests `pytest.mark.asyncio` and their async fixtures with
`pytest_asyncio.fixture`, so they run in pytest-asyncio's strict and auto modes alike;
install `lollms-server[test]` (pytest-asyncio). Your own async fixtures need
`pytest_asyncio.fixture` in strict mode. Each test gets a fresh binding; keep expensive
things (a server process, downloaded weights) in session-scoped fixtures.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import ContractBase, SpeechSample, contract
    from .boundary import SdkContract
    from .embeddings import EmbeddingsContract
    from .fixtures import (
        backend_unavailable,
        build_binding,
        free_port,
        modules_imported_by,
        started_binding,
        wait_for_http,
        wait_for_http_async,
        within,
    )
    from .lifecycle import LifecycleContract, UnavailableContract
    from .loop import LoopContract, worst_loop_gap
    from .media import ImageContract, SpeechContract, TranscriptionContract
    from .process import ServerProcess, lollms_process
    from .server import ServerContract, serve_binding
    from .suite import ContractSuite
    from .text import StreamingContract, TextContract
    from .tokenizer import TokenizerContract

# Imported on first use: the pytest plugin (`plugin.py`) loads with every pytest run, and must
# neither pull in the app nor let pytest rewrite these modules' asserts too late.
_HOMES = {
    "ContractBase": "base",
    "SpeechSample": "base",
    "contract": "base",
    "EmbeddingsContract": "embeddings",
    "SdkContract": "boundary",
    "backend_unavailable": "fixtures",
    "build_binding": "fixtures",
    "free_port": "fixtures",
    "modules_imported_by": "fixtures",
    "started_binding": "fixtures",
    "wait_for_http": "fixtures",
    "wait_for_http_async": "fixtures",
    "within": "fixtures",
    "LifecycleContract": "lifecycle",
    "UnavailableContract": "lifecycle",
    "LoopContract": "loop",
    "worst_loop_gap": "loop",
    "ImageContract": "media",
    "ServerProcess": "process",
    "lollms_process": "process",
    "SpeechContract": "media",
    "TranscriptionContract": "media",
    "ServerContract": "server",
    "serve_binding": "server",
    "ContractSuite": "suite",
    "StreamingContract": "text",
    "TextContract": "text",
    "TokenizerContract": "tokenizer",
}
__all__ = [
    "ContractBase",
    "ContractSuite",
    "EmbeddingsContract",
    "ImageContract",
    "LifecycleContract",
    "LoopContract",
    "SdkContract",
    "ServerContract",
    "ServerProcess",
    "SpeechContract",
    "SpeechSample",
    "StreamingContract",
    "TextContract",
    "TokenizerContract",
    "TranscriptionContract",
    "UnavailableContract",
    "backend_unavailable",
    "build_binding",
    "contract",
    "free_port",
    "lollms_process",
    "modules_imported_by",
    "serve_binding",
    "started_binding",
    "wait_for_http",
    "wait_for_http_async",
    "within",
    "worst_loop_gap",
]


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first access."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
