"""Models in memory, cancellation, the worker thread, settings that change the pipeline."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import time
import weakref
from pathlib import Path
from typing import Any

import pytest
from lollms_diffusers import DiffusersBinding
from lollms_diffusers.runner import Cancelled

from lollms_server.errors import BackendUnavailable, ConfigError, ModelNotFound
from lollms_server.testing import build_binding, started_binding

from .conftest import AUDIO, INSTANCE, SD, VIDEO, image_input, make_request

LONG = 40  # steps of a render that is abandoned early


async def test_list_models_reports_family_capabilities_and_memory(
    binding: DiffusersBinding,
) -> None:
    models = {m.name: m for m in await binding.list_models()}
    assert sorted(models) == [VIDEO, AUDIO, SD]
    sd = models[SD]
    assert sd.family == "SD 1.x"
    assert {"tti", "i2i", "inpaint"} <= sd.capabilities
    assert models[VIDEO].family == "AnimateDiff" and "ttv" in models[VIDEO].capabilities
    assert models[AUDIO].family == "AudioLDM" and "ttm" in models[AUDIO].capabilities
    assert sd.parameters and sd.size_bytes and sd.memory_bytes == sd.parameters * 4
    assert sd.quantization == "F32" and sd.details["memory_dtype"] == "fp32"
    assert not sd.loaded


async def test_memory_estimate_follows_the_dtype(settings: dict[str, Any]) -> None:
    half = build_binding(DiffusersBinding, INSTANCE, {**settings, "dtype": "fp16"})
    full = build_binding(DiffusersBinding, INSTANCE, settings)
    sd_half = {m.name: m for m in await half.list_models()}[SD]
    sd_full = {m.name: m for m in await full.list_models()}[SD]
    assert sd_half.memory_bytes and sd_full.memory_bytes
    assert sd_half.memory_bytes * 2 == sd_full.memory_bytes


async def test_load_reports_bytes_and_list_models_follows(binding: DiffusersBinding) -> None:
    used = await binding.load(SD)
    assert used and used > 1_000_000
    models = {m.name: m for m in await binding.list_models()}
    assert models[SD].loaded and models[SD].memory_bytes == used
    assert await binding.load(SD) == used  # idempotent
    await binding.unload(SD)
    await binding.unload(SD)
    assert not {m.name: m for m in await binding.list_models()}[SD].loaded
    with pytest.raises(ModelNotFound):
        await binding.load("../../etc")


async def test_unload_really_drops_the_pipeline(binding: DiffusersBinding) -> None:
    (image,) = (await binding.generate(make_request("tti", seed=1))).outputs
    await binding.generate(make_request("i2i", inputs=(image_input(image.data),), seed=1))
    await abandon_after_first_step(binding)
    pipe = weakref.ref(binding.loaded_pipeline(SD))
    unet = weakref.ref(binding.loaded_pipeline(SD).unet)
    await binding.unload(SD)
    gc.collect()
    assert binding.loaded_pipeline(SD) is None
    assert pipe() is None and unet() is None, "something still holds the unloaded pipeline"


async def test_max_loaded_evicts_the_least_recently_used(settings: dict[str, Any]) -> None:
    async with started_binding(DiffusersBinding, INSTANCE, {**settings, "max_loaded": 2}) as b:
        assert isinstance(b, DiffusersBinding)
        await b.load(SD)
        await b.load(AUDIO)
        evicted = weakref.ref(b.loaded_pipeline(SD))
        await b.load(VIDEO)
        gc.collect()
        assert b.loaded_models() == [AUDIO, VIDEO]
        assert evicted() is None


async def abandon_after_first_step(binding: DiffusersBinding, steps: int = LONG) -> Any:
    """Start a long render, close its stream at the first progress step; the job."""
    stream = binding.stream(make_request("tti", steps=steps, seed=1))
    async for chunk in stream:
        if "step" in chunk.metadata:
            break
    await stream.aclose()
    job = binding.last_job
    assert job is not None
    with pytest.raises(Cancelled):
        await asyncio.wait_for(job.future, 30)
    return job


async def test_closing_the_stream_stops_the_pipeline_between_steps(
    binding: DiffusersBinding,
) -> None:
    job = await abandon_after_first_step(binding)
    assert 1 <= job.steps_done < LONG, f"ran {job.steps_done} of {LONG} steps"
    (image,) = (await binding.generate(make_request("tti", seed=1))).outputs
    assert image.data.startswith(b"\x89PNG"), "the binding still works after a cancel"


async def test_cancelling_the_consumer_stops_the_pipeline(binding: DiffusersBinding) -> None:
    await binding.load(SD)
    first_step = asyncio.Event()

    async def consume() -> None:
        async for chunk in binding.stream(make_request("tti", steps=LONG, seed=1)):
            if "step" in chunk.metadata:
                first_step.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first_step.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    job = binding.last_job
    assert job is not None
    with pytest.raises(Cancelled):
        await asyncio.wait_for(job.future, 30)
    assert job.steps_done < LONG


async def test_a_queued_job_that_is_abandoned_never_runs(binding: DiffusersBinding) -> None:
    await binding.load(SD)
    running = binding.stream(make_request("tti", steps=8, seed=1))
    assert (await anext(running)).type == "info"  # the first job has started
    running_job = binding.last_job
    queued = binding.stream(make_request("tti", steps=8, seed=2))
    waiting = asyncio.create_task(anext(queued))
    for _ in range(1000):  # until the second job is queued behind the first
        if binding.last_job is not running_job:
            break
        await asyncio.sleep(0.005)
    queued_job = binding.last_job
    assert queued_job is not running_job
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    await queued.aclose()
    rest = [chunk async for chunk in running]
    assert rest[-1].output is not None
    assert queued_job is not None
    with pytest.raises(Cancelled):
        await asyncio.wait_for(queued_job.future, 30)
    assert queued_job.steps_done == 0


async def test_the_event_loop_keeps_running_while_a_model_renders(
    binding: DiffusersBinding,
) -> None:
    await binding.load(SD)
    gaps: list[float] = []
    loop = asyncio.get_running_loop()
    render = asyncio.create_task(binding.generate(make_request("tti", steps=30, seed=1)))
    while not render.done():
        before = loop.time()
        await asyncio.sleep(0.01)
        gaps.append(loop.time() - before)
    await render
    assert len(gaps) > 5, "the render was too short to measure anything"
    assert max(gaps) < 0.5, f"the event loop stalled for {max(gaps):.2f}s"


async def test_shutdown_stops_running_work(settings: dict[str, Any]) -> None:
    binding = build_binding(DiffusersBinding, INSTANCE, settings)
    await binding.startup()
    assert isinstance(binding, DiffusersBinding)
    await binding.load(SD)
    stream = binding.stream(make_request("tti", steps=LONG, seed=1))
    await anext(stream)
    await binding.shutdown()
    with pytest.raises(BackendUnavailable, match="stopped"):
        async for _ in stream:
            pass
    assert binding.loaded_models() == []


async def test_scheduler_setting_swaps_the_scheduler(settings: dict[str, Any]) -> None:
    plain = await first_image(settings)
    euler = {**settings, "scheduler": "EulerDiscreteScheduler"}
    async with started_binding(DiffusersBinding, INSTANCE, euler) as b:
        assert isinstance(b, DiffusersBinding)
        (image,) = (await b.generate(make_request("tti", seed=5))).outputs
        assert type(b.loaded_pipeline(SD).scheduler).__name__ == "EulerDiscreteScheduler"
    assert image.data != plain


async def test_lora_changes_the_image_in_proportion(
    settings: dict[str, Any], tiny_lora: Path
) -> None:
    plain = await first_image(settings)
    full = await first_image({**settings, "loras": [{"path": str(tiny_lora), "scale": 1.0}]})
    off = await first_image({**settings, "loras": [{"path": str(tiny_lora), "scale": 0.0}]})
    other = await first_image(
        {**settings, "loras": [{"path": str(tiny_lora), "models": ["some-other-model"]}]}
    )
    assert full != plain
    assert off == plain and other == plain


async def test_missing_lora_fails_the_load_with_its_path(settings: dict[str, Any]) -> None:
    broken = {**settings, "loras": [{"path": "/nowhere/style.safetensors"}]}
    async with started_binding(DiffusersBinding, INSTANCE, broken) as b:
        with pytest.raises(Exception, match=r"/nowhere/style\.safetensors"):
            await b.load(SD)


async def first_image(settings: dict[str, Any]) -> bytes:
    """The seed-5 image of an instance with `settings`."""
    async with started_binding(DiffusersBinding, INSTANCE, settings) as b:
        (image,) = (await b.generate(make_request("tti", seed=5))).outputs
        return image.data


async def test_attention_slicing_and_vae_tiling_still_render(settings: dict[str, Any]) -> None:
    tuned = {**settings, "attention_slicing": True, "vae_tiling": True, "cpu_offload": "model"}
    async with started_binding(DiffusersBinding, INSTANCE, tuned) as b:
        (image,) = (await b.generate(make_request("tti", seed=5))).outputs
        assert image.data.startswith(b"\x89PNG")


async def test_health_and_missing_folders(settings: dict[str, Any], tmp_path: Path) -> None:
    up = build_binding(DiffusersBinding, INSTANCE, settings)
    assert (await up.health()).state == "up"
    missing = str(tmp_path / "missing")
    partly = build_binding(
        DiffusersBinding,
        INSTANCE,
        {**settings, "models_folders": [*settings["models_folders"], missing]},
    )
    health = await partly.health()
    assert health.state == "degraded" and missing in health.detail
    assert len(await partly.list_models()) == 3
    none = build_binding(DiffusersBinding, INSTANCE, {**settings, "models_folders": [missing]})
    with pytest.raises(BackendUnavailable, match="no models folder"):
        await none.list_models()


@pytest.mark.parametrize(
    "bad",
    [
        {"device": "gpu"},
        {"dtype": "fp8"},
        {"scheduler": "not a scheduler"},
        {"cpu_offload": "always"},
        {"loras": [{"scale": 1.0}]},
        {"max_loaded": 0},
    ],
)
def test_bad_settings_are_config_errors(settings: dict[str, Any], bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=next(iter(bad))):
        build_binding(DiffusersBinding, INSTANCE, {**settings, **bad})


STUCK_IN_ONE_STEP = """
import asyncio, time
from lollms_diffusers.runner import Runner

async def main():
    runner = Runner("stuck")
    runner.submit("one long step", lambda job: time.sleep(120))  # no step boundary to stop at
    await asyncio.sleep(0.3)
    await runner.stop(0.5)  # what shutdown does: it gives up waiting after its time limit
    print("stopped", flush=True)

asyncio.run(main())
"""


def test_a_pipeline_stuck_in_one_step_does_not_keep_the_process_from_exiting() -> None:
    """A step cannot be interrupted (a 1024x1024 edit on a small VAE took over 10 minutes for
    its first step); once shutdown stops waiting, the server process still exits (SIGTERM's
    drain ends with an exit, as the README says), instead of Python joining the worker."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", STUCK_IN_ONE_STEP],
        capture_output=True,
        text=True,
        timeout=30,  # before: Python joined the worker thread at exit, for the whole step
        check=False,
    )
    assert done.returncode == 0 and "stopped" in done.stdout, done.stderr
    assert time.monotonic() - started < 20
