"""GPU smoke check: one short prepared run for a machine with an NVIDIA GPU (issue 19).

Prints one Markdown block for docs/benchmarks.md ("GPU smoke check"):

1. **CPU**: a tiny Stable Diffusion built from configs (no download), seconds per denoising step
   on the CPU (median of the steps of one run at `--size` px);
2. **NVML**: every GPU the core's probe (`lollms_server.resources.gpu.probe`, the dashboard's
   source) reads: name, memory, utilisation, temperature;
3. **GPU**: the same pipeline on `cuda`, seconds per step and peak memory;
4. **Core placement**: a lollms-server process with a diffusers instance (`device = "auto"`)
   and a llamacpp instance (SmolLM2 or a tiny GGUF, `n_gpu_layers = 99`); both models are
   loaded through `/api/v1/load_model`, the dashboard's "Loaded models" table says where each
   landed, one image and one short answer are generated, and NVML is read again.

Without CUDA (no NVML device, or a CPU-only torch) it says so after the CPU part and exits 0.
Needs lollms-server, lollms-diffusers and lollms-llamacpp installed. Run it from the repo root:
`python bench/gpu_smoke.py [--size 256] [--steps 4]`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from itertools import pairwise
from pathlib import Path
from typing import Any

from common import clean_env, free_port, spawn

MODEL = "tiny-sd"
CONFIG = """
[server]
host = "127.0.0.1"
port = {port}
log_level = "warning"

[bindings.images]
type = "diffusers"
models_folders = ["{models}"]
use_data_dir = false
device = "auto"
default_steps = {steps}

[bindings.text]
type = "llamacpp"
models_folders = ["{ggufs}"]
n_gpu_layers = 99
n_ctx = 512

[defaults]
tti = "images"
ttt = "text"
"""


def step_times(device: str, models: Path, size: int, steps: int) -> dict[str, Any]:
    """Seconds per step of the tiny SD on `device` (a warm-up run first), and peak memory."""
    import torch
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(models / MODEL, local_files_only=True).to(device)
    pipe.set_progress_bar_config(disable=True)
    marks: list[float] = []

    def mark(_pipe: Any, _index: int, _t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        marks.append(time.perf_counter())
        return tensors

    def run() -> None:
        marks.clear()
        marks.append(time.perf_counter())
        generator = torch.Generator("cpu").manual_seed(1)
        pipe("a red circle", num_inference_steps=steps, width=size, height=size,
             generator=generator, callback_on_step_end=mark)  # fmt: skip

    run()  # warm-up: kernels, allocator
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    run()
    found: dict[str, Any] = {"step_s": statistics.median(b - a for a, b in pairwise(marks))}
    if device.startswith("cuda"):
        found["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return found


def nvml_rows() -> tuple[list[str], str | None]:
    """Markdown table rows of the GPUs NVML reads, or the reason there are none."""
    from lollms_server.resources import gpu

    report = gpu.probe()
    rows = [
        f"| {d.index} | {d.name} | {d.memory_used_bytes / 2**20:.0f} / "
        f"{d.memory_total_bytes / 2**20:.0f} MiB | {d.utilization_percent}% | "
        f"{d.temperature_c} °C |"
        for d in report.devices
    ]
    return rows, report.error


def call(url: str, path: str, body: dict[str, Any] | None = None, timeout: float = 600) -> Any:
    """GET (or POST `body` as JSON) and return the decoded answer (JSON, else text)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, method="POST" if data else "GET")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        text = response.read().decode()
    return json.loads(text) if text.startswith(("{", "[")) else text


def gguf_folder(folder: Path) -> tuple[Path, str]:
    """A folder with SmolLM2 (when its wheel is installed) or a tiny random GGUF."""
    from lollms_llamacpp.serve import smollm2_path

    folder.mkdir(parents=True, exist_ok=True)
    source = smollm2_path()
    if source is not None:
        (folder / "smollm2.gguf").symlink_to(source)
        return folder, "smollm2"
    from lollms_llamacpp.tiny_gguf import write_tiny_gguf

    write_tiny_gguf(folder / "tiny.gguf", seed=0)
    return folder, "tiny"


def placement(work: Path, models: Path, steps: int) -> list[str]:
    """Load both models in a real server; lines saying where each landed and how it ran."""
    ggufs, text_model = gguf_folder(work / "gguf")
    port = free_port()
    config = work / "lollms.toml"
    config.write_text(CONFIG.format(port=port, models=models, ggufs=ggufs, steps=steps))
    url = f"http://127.0.0.1:{port}"
    cli = [sys.executable, "-m", "lollms_server.cli", "--config", str(config)]
    env = clean_env({"LOLLMS_DATA_DIR": str(work / "data")})
    lines = []
    with spawn(cli, env, f"{url}/api/v1/health", limit=120, log=work / "server.log"):
        for instance, model in (("images", MODEL), ("text", text_model)):
            started = time.perf_counter()
            call(url, "/api/v1/load_model", {"binding_name": instance, "model_name": model})
            lines.append(f"- load `{instance}/{model}`: {time.perf_counter() - started:.1f} s")
        dashboard = str(call(url, "/"))
        for name, device in re.findall(
            r"<td>([\w./-]+)</td><td>[^<]*</td><td class=\"device\">([^<]*)</td>", dashboard
        ):
            lines.append(f"- `{name}` placed on **{device}** (dashboard)")
        started = time.perf_counter()
        image = {"binding_name": "images", "model_name": MODEL, "generation_type": "tti"}
        image["input_data"] = [{"type": "text", "role": "user_prompt", "data": "a red circle"}]
        image["parameters"] = {"seed": 1, "width": 256, "height": 256}
        call(url, "/api/v1/generate", image)
        lines.append(f"- one 256 px image ({steps} steps): {time.perf_counter() - started:.2f} s")
        started = time.perf_counter()
        text = {**image, "binding_name": "text", "model_name": text_model}
        text.update(generation_type="ttt", parameters={"max_tokens": 32, "seed": 1})
        answer = call(url, "/api/v1/generate", text)
        tokens = (answer.get("usage") or {}).get("completion_tokens", "?")
        lines.append(f"- {tokens} tokens from llama.cpp: {time.perf_counter() - started:.2f} s")
        rows, _ = nvml_rows()
        lines += ["", "NVML with both models loaded:", "", *TABLE_HEAD, *rows]
    return lines


TABLE_HEAD = [
    "| GPU | name | memory used / total | utilisation | temperature |",
    "|---|---|---|---|---|",
]


def main() -> int:
    """Run the parts; print the Markdown block."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    parser.add_argument("--steps", type=int, default=4, help="denoising steps per run")
    parser.add_argument(
        "--server-on-cpu", action="store_true", help="without CUDA, still run part 4 (a check)"
    )
    args = parser.parse_args()
    from lollms_diffusers import tiny

    out = ["### GPU smoke check", ""]
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        tiny.build_sd(work / "models" / MODEL)
        cpu = step_times("cpu", work / "models", args.size, args.steps)
        out.append(f"- CPU: {cpu['step_s'] * 1000:.1f} ms per step (tiny SD, {args.size} px)")
        rows, error = nvml_rows()
        import torch

        if not rows or not torch.cuda.is_available():
            reason = error or f"torch {torch.__version__} has no CUDA"
            out += [f"- No CUDA here ({reason}): GPU parts skipped.", ""]
            if args.server_on_cpu:
                out += placement(work, work / "models", args.steps)
            print("\n".join(out))
            return 0
        out += ["", *TABLE_HEAD, *rows, ""]
        cuda = step_times("cuda", work / "models", args.size, args.steps)
        speedup = cpu["step_s"] / cuda["step_s"]
        out.append(
            f"- GPU: {cuda['step_s'] * 1000:.1f} ms per step ({speedup:.1f}x the CPU), "
            f"peak {cuda['peak_mib']:.0f} MiB"
        )
        with contextlib.suppress(KeyboardInterrupt):
            out += placement(work, work / "models", args.steps)
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
