"""Contracts of an instance's life: health, model listing, load/unload, and a dead backend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest
import pytest_asyncio

from ..bindings import Binding, Health, ModelInfo
from ..errors import BackendUnavailable, LollmsError, ModelNotFound
from .base import ContractBase, contract
from .fixtures import started_binding, within
from .server import input_data, instance_health, serve_binding


class LifecycleContract(ContractBase):
    """Health is up, models are listed, load/unload are idempotent and show in list_models."""

    reports_loaded: ClassVar[bool] = True
    health_timeout_s: ClassVar[float] = 10.0
    lifecycle_model: ClassVar[str | None] = None

    def configured_models(self) -> list[str]:
        """Every model named by the knobs."""
        knobs = (
            self.model,
            self.image_model,
            self.speech_model,
            self.transcription_model,
            self.embedding_model,
            self.lifecycle_model,
        )
        return sorted({m for m in knobs if m})

    async def models(self, binding: Binding) -> dict[str, ModelInfo]:
        """list_models() by name, failing the test after `request_timeout_s`."""
        listed = await within(self.request_timeout_s, binding.list_models(), "list_models()")
        assert all(isinstance(m, ModelInfo) for m in listed), listed
        return {m.name: m for m in listed}

    @contract()
    async def test_health_is_up(self, binding: Binding) -> None:
        """A started binding reports `up` quickly, with a sane latency."""
        health = await within(self.health_timeout_s, binding.health(), "health()")
        assert isinstance(health, Health), f"health() returned {type(health).__name__}"
        assert health.state == "up", health
        assert health.latency_ms is None or health.latency_ms >= 0

    @contract()
    async def test_list_models(self, binding: Binding) -> None:
        """list_models() gives uniquely named ModelInfo objects including the knob models."""
        listed = await within(self.request_timeout_s, binding.list_models(), "list_models()")
        names = [m.name for m in listed]
        assert names, "list_models() is empty on a healthy backend"
        assert all(names) and len(set(names)) == len(names), f"bad or duplicate names: {names}"
        missing = [m for m in self.configured_models() if m not in names]
        assert not missing, f"models {missing} are not listed; listed: {names}"

    @contract("load_unload")
    async def test_load_and_unload_are_idempotent(self, binding: Binding) -> None:
        """Loading twice and unloading twice work; list_models() follows the loaded state."""
        model = self.lifecycle_model or self.configured_models()[0]
        for _ in range(2):
            used = await within(self.request_timeout_s, binding.load(model), "load()")
            assert used is None or (isinstance(used, int) and used >= 0), used
        if self.reports_loaded:
            assert (await self.models(binding))[model].loaded, f"{model} loaded but not marked"
        for _ in range(2):
            await within(self.request_timeout_s, binding.unload(model), "unload()")
        if self.reports_loaded:
            assert not (await self.models(binding))[model].loaded, f"{model} still loaded"

    @contract("load_unload")
    async def test_load_unknown_model_is_model_not_found(self, binding: Binding) -> None:
        """Loading a model the backend does not have raises ModelNotFound."""
        with pytest.raises(ModelNotFound):
            await within(self.request_timeout_s, binding.load("lollms-no-such-model"), "load()")


class UnavailableContract(ContractBase):
    """A binding pointed at a dead backend fails fast and loudly, naming the instance."""

    unavailable_timeout_s: ClassVar[float] = 15.0

    @pytest.fixture
    def unavailable_settings(self) -> Mapping[str, Any]:
        """Settings pointing at a backend that is not there; override this fixture."""
        pytest.fail(
            f"{type(self).__name__}: override the `unavailable_settings` fixture with settings "
            "that point at a dead backend (e.g. a free_port() nobody listens on)",
            pytrace=False,
        )

    @pytest_asyncio.fixture
    async def unavailable_binding(
        self, unavailable_settings: Mapping[str, Any]
    ) -> AsyncIterator[Binding]:
        """The binding built on `unavailable_settings`; its startup may fail, but in time."""
        async with started_binding(
            self.binding_type(),
            self.instance_name,
            unavailable_settings,
            timeout_s=self.unavailable_timeout_s,
            expect_down=True,
        ) as binding:
            yield binding

    def assert_names_instance(self, error: LollmsError) -> None:
        """A 5xx error that says which instance failed (in `binding` or the message)."""
        assert error.status >= 500, f"{type(error).__name__} is a {error.status}, not a 5xx"
        named = error.binding == self.instance_name or self.instance_name in error.message
        assert named, f"{error!r} does not name the instance {self.instance_name!r}"

    @contract()
    async def test_health_is_down(self, unavailable_binding: Binding) -> None:
        """health() says `down`, with a reason, within the time limit and without raising."""
        health = await within(self.unavailable_timeout_s, unavailable_binding.health(), "health()")
        assert health.state == "down", health
        assert health.detail, "a down health needs a detail saying why"

    @contract()
    async def test_list_models_raises_backend_unavailable(
        self, unavailable_binding: Binding
    ) -> None:
        """list_models() raises BackendUnavailable; it never hides the failure behind []."""
        try:
            listed = await within(
                self.unavailable_timeout_s, unavailable_binding.list_models(), "list_models()"
            )
        except BackendUnavailable:
            return
        pytest.fail(f"list_models() returned {listed!r} instead of raising BackendUnavailable")

    @contract()
    async def test_generate_raises_5xx_naming_the_instance(
        self, unavailable_binding: Binding
    ) -> None:
        """generate() raises a 5xx LollmsError that names the instance, in time."""
        request = self.make_request(self.first_generation_type(prompt_only=False))
        with pytest.raises(LollmsError) as caught:
            await within(
                self.unavailable_timeout_s, unavailable_binding.generate(request), "generate()"
            )
        self.assert_names_instance(caught.value)

    @contract("ttt", "stream")
    async def test_stream_raises_5xx_naming_the_instance(
        self, unavailable_binding: Binding
    ) -> None:
        """The first anext() of stream() raises a 5xx LollmsError naming the instance."""
        with pytest.raises(LollmsError) as caught:
            stream = unavailable_binding.stream(self.make_request())
            await within(self.unavailable_timeout_s, anext(stream), "the first chunk")
        self.assert_names_instance(caught.value)

    @contract()
    async def test_app_reports_the_instance_down(
        self, unavailable_settings: Mapping[str, Any], tmp_path: Path
    ) -> None:
        """The app still starts; it shows the instance down and answers generate with a 5xx."""
        kind = self.first_generation_type(prompt_only=False)
        body = {
            "input_data": input_data(kind, "hello"),
            "binding_name": self.instance_name,
            "model_name": self.model_for(kind),
            "generation_type": kind,
        }

        async def check() -> None:
            async with serve_binding(
                self.binding_type(), self.instance_name, unavailable_settings, tmp_path / "data"
            ) as client:
                health = await instance_health(client, self.instance_name)
                assert health["state"] == "down", health
                response = await client.post("/api/v1/generate", json=body)
                assert response.status >= 500, await response.text()
                error = (await response.json())["error"]
                assert error["binding"] == self.instance_name, error

        await within(self.unavailable_timeout_s * 3, check(), "the app against a dead backend")
