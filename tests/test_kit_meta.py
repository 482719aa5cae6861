"""The kit itself: `--backend` skip-or-fail, strict asyncio mode, and catching broken bindings."""

from __future__ import annotations

import textwrap

import pytest

pytest_plugins = ["pytester"]

MISSING_BACKEND = """
import pytest
from lollms_server.builtin.echo import EchoBinding
from lollms_server.testing import TextContract, backend_unavailable

@pytest.fixture(scope="session")
def backend(request):
    backend_unavailable(request, "foo-server is not installed")

class TestFoo(TextContract):
    binding_class = EchoBinding
    model = "echo"

    @pytest.fixture
    def binding_settings(self, backend):
        return {"url": backend}
"""

BROKEN_STARTUP = """
from lollms_server.builtin.echo import EchoBinding
from lollms_server.errors import BackendUnavailable
from lollms_server.testing import LifecycleContract

class CannotStart(EchoBinding):
    async def startup(self):
        raise BackendUnavailable("connection refused")

class TestCannotStart(LifecycleContract):
    binding_class = CannotStart
    model = "echo"
"""


def run(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    """Run `source` as a plugin's test file in a fresh pytest (strict asyncio mode)."""
    pytester.makepyfile(test_plugin=textwrap.dedent(source))
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rsfE", *args)


def test_missing_backend_skips_under_auto(pytester: pytest.Pytester) -> None:
    """backend_unavailable() skips every test under the default `--backend=auto`."""
    result = run(pytester, MISSING_BACKEND)
    result.assert_outcomes(skipped=4)
    result.stdout.fnmatch_lines(["*foo-server is not installed*--backend=require*"])


def test_missing_backend_fails_under_require(pytester: pytest.Pytester) -> None:
    """Under `--backend=require` the same run fails, naming the reason."""
    result = run(pytester, MISSING_BACKEND, "--backend=require")
    result.assert_outcomes(errors=4)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*real backend unavailable (--backend=require)*foo-server*"])


def test_binding_that_cannot_start_skips_or_fails(pytester: pytest.Pytester) -> None:
    """The kit's own `binding` fixture routes a failing startup() through backend_unavailable."""
    auto = run(pytester, BROKEN_STARTUP)
    auto.assert_outcomes(skipped=4, passed=0)
    auto.stdout.fnmatch_lines(["*startup() of 'contract' failed*connection refused*"])
    required = run(pytester, BROKEN_STARTUP, "--backend=require")
    required.assert_outcomes(errors=4)


def test_contracts_pass_in_strict_asyncio_mode(pytester: pytest.Pytester) -> None:
    """A plugin repo without `asyncio_mode = auto` still runs the async contract tests."""
    result = run(
        pytester,
        """
        import pytest
        from lollms_server.builtin.echo import EchoBinding
        from lollms_server.testing import StreamingContract, TextContract, UnavailableContract

        class TestEcho(TextContract, StreamingContract):
            binding_class = EchoBinding
            model = "echo"

        class TestEchoDown(UnavailableContract):
            binding_class = EchoBinding
            model = "echo"

            @pytest.fixture
            def unavailable_settings(self):
                return {"down": True}
        """,
        "--asyncio-mode=strict",
    )
    result.assert_outcomes(passed=13)


def test_capability_gate_explains_the_skip(pytester: pytest.Pytester) -> None:
    """Mixins for capabilities the class does not declare skip, saying which and why."""
    result = run(
        pytester,
        """
        from lollms_server.builtin.echo import EchoBinding
        from lollms_server.testing import ImageContract

        class TextOnly(EchoBinding):
            capabilities = frozenset({"ttt"})

        class TestTextOnly(ImageContract):
            binding_class = TextOnly
            model = "echo"
        """,
    )
    result.assert_outcomes(skipped=3)
    result.stdout.fnmatch_lines(["*TextOnly does not declare capability tti (it declares: ttt)*"])


def test_unavailable_contract_for_a_transcription_only_binding(pytester: pytest.Pytester) -> None:
    """A binding without prompt-only types is still driven (with sample audio) when down."""
    result = run(
        pytester,
        """
        import pytest
        from lollms_server.builtin.echo import EchoBinding
        from lollms_server.testing import UnavailableContract

        class EarsOnly(EchoBinding):
            capabilities = frozenset({"stt"})

        class TestEarsDown(UnavailableContract):
            binding_class = EarsOnly
            model = "echo"

            @pytest.fixture
            def unavailable_settings(self):
                return {"down": True}
        """,
    )
    result.assert_outcomes(passed=4, skipped=1)
    result.stdout.fnmatch_lines(["*EarsOnly does not declare capability stream, ttt*"])


def test_kit_catches_broken_bindings(pytester: pytest.Pytester) -> None:
    """Contract tests fail for bindings that break the contract (so they can fail at all)."""
    result = run(
        pytester,
        """
        import asyncio
        import dataclasses
        import pytest
        from lollms_server.bindings import join_stream
        from lollms_server.builtin.echo import EchoBinding
        from lollms_server.testing import (
            ImageContract, StreamingContract, TextContract, UnavailableContract,
        )

        class Broken(EchoBinding):
            async def list_models(self):
                if self.config.get("down"):
                    return []  # hides the failure
                return await super().list_models()

            async def generate(self, request):
                params = {k: v for k, v in request.parameters.items() if k != "stop"}
                request = dataclasses.replace(request, parameters=params)  # ignores `stop`
                result = await join_stream(EchoBinding.stream(self, request))
                outputs = [
                    dataclasses.replace(o, mime_type="image/jpeg") if o.type == "image" else o
                    for o in result.outputs
                ]
                return dataclasses.replace(result, outputs=tuple(outputs))

            async def stream(self, request):
                params = {k: v for k, v in request.parameters.items() if k != "stop"}
                request = dataclasses.replace(request, parameters=params)  # ignores `stop`
                try:
                    async for chunk in super().stream(request):
                        yield chunk
                finally:
                    await asyncio.sleep(30)  # never lets go of the upstream request

        class TestBroken(TextContract, StreamingContract, ImageContract):
            binding_class = Broken
            model = "echo"
            close_timeout_s = 0.3
            request_timeout_s = 2.0
            honours_stop = True  # Broken drops `stop`: this must fail

        class TestBrokenDown(UnavailableContract):
            binding_class = Broken
            model = "echo"

            @pytest.fixture
            def unavailable_settings(self):
                return {"down": True}
        """,
        "-k",
        "stop or aclose or magic or list_models_raises",
    )
    result.assert_outcomes(failed=4)
    result.stdout.fnmatch_lines_random(
        [
            "*stop 'five' in *",
            "*aclose() after the first chunk did not finish within 0.3s*",
            "*mime_type 'image/jpeg' but the bytes are image/png*",
            "*list_models() returned [] instead of raising BackendUnavailable*",
        ]
    )


SWITCHED_OFF = """
from lollms_server.builtin.echo import EchoBinding
from lollms_server.testing import LifecycleContract

class TestEcho(LifecycleContract):
    binding_class = EchoBinding
    model = "echo"
    test_load_and_unload_are_idempotent = None
"""

DECLARED = """
from lollms_server.builtin.echo import EchoBinding
from lollms_server.testing import LifecycleContract

class TestEcho(LifecycleContract):
    binding_class = EchoBinding
    model = "echo"
    not_applicable = {"test_load_and_unload_are_idempotent": "echo keeps no model in memory"}
"""


def test_a_suite_test_switched_off_silently_is_refused(pytester: pytest.Pytester) -> None:
    """`test_x = None` fails collection with a message that says how to declare it instead."""
    result = run(pytester, SWITCHED_OFF)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*switches a contract test off silently*not_applicable*"])


def test_a_suite_test_overridden_is_refused(pytester: pytest.Pytester) -> None:
    """Redefining a suite test (to skip it, or to pass without checking) fails collection the
    same way: a knob or `not_applicable` says it in the report; an override hides it."""
    overridden = SWITCHED_OFF.replace(
        "    test_load_and_unload_are_idempotent = None\n",
        "    async def test_load_and_unload_are_idempotent(self, binding):\n"
        "        pytest.skip('flaky here')\n",
    )
    result = run(pytester, "import pytest\n" + overridden)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*overrides the contract test*not_applicable*"])


def test_the_suite_refuses_a_plugin_that_imports_core_internals(
    pytester: pytest.Pytester,
) -> None:
    """A third-party package that imports the core's modules instead of `lollms_server.sdk`
    fails `ContractSuite`, naming the file and the modules; one that keeps to the SDK passes."""
    pytester.mkpydir("lollms_fake")
    (pytester.path / "lollms_fake" / "binding.py").write_text(
        "from lollms_server.builtin.echo import EchoBinding\n"
        "from lollms_server.sdk import Binding\n\n"
        "def later():\n    from lollms_server import registry\n\n"
        "class FakeBinding(EchoBinding):\n    name = 'fake'\n"
    )
    source = """
        from lollms_fake.binding import FakeBinding
        from lollms_server.testing import ContractSuite

        class TestFake(ContractSuite):
            binding_class = FakeBinding
            model = "echo"
        """
    result = run(pytester, source, "-k", "imports_only")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*binding.py imports lollms_server.builtin.echo, lollms_server.registry*sdk*"]
    )
    (pytester.path / "lollms_fake" / "binding.py").write_text(
        "from lollms_server.sdk import Binding\n\nclass FakeBinding(Binding):\n    name = 'f'\n"
    )
    run(pytester, source, "-k", "imports_only").assert_outcomes(passed=1)


def test_a_declared_skip_shows_its_reason(pytester: pytest.Pytester) -> None:
    """A test in `not_applicable` is skipped with the declared reason in the report."""
    result = run(pytester, DECLARED)
    result.stdout.fnmatch_lines(["*SKIPPED*not applicable to TestEcho: echo keeps no model*"])
    assert result.parseoutcomes().get("skipped") == 1


def test_a_stale_declaration_is_refused(pytester: pytest.Pytester) -> None:
    """`not_applicable` naming a test the suite does not have (a typo) fails collection."""
    result = run(pytester, DECLARED.replace("test_load_and_unload", "test_lod_and_unload"))
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*not_applicable names 'test_lod_and_unload_are_idempotent'*"])


def test_tokenizer_contract_names_what_to_fix(pytester: pytest.Pytester) -> None:
    """A tokenize() that returns strings fails the opt-in TokenizerContract, saying so."""
    result = run(
        pytester,
        """
        from lollms_server.builtin.echo import EchoBinding
        from lollms_server.testing import TokenizerContract

        class Wordy(EchoBinding):
            async def tokenize(self, text, model):
                self._check_model(model)
                return text.split()

        class TestWordy(TokenizerContract):
            binding_class = Wordy
            model = "echo"
        """,
    )
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(["*tokenize() must return a list of int; got ['Hello'*"])
