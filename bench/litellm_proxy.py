"""The LiteLLM proxy as a peer in bench/overhead.py: its own venv, an offline config, one worker.

LiteLLM is a ~750 MB environment, so it lives in a venv of its own (default
`.bench-venvs/litellm`, ignored by git), created and filled with `pip install
'litellm[proxy]==VERSION'` on first use. The proxy runs offline: `LITELLM_MASTER_KEY` set (it
refuses to start without one), `LITELLM_LOCAL_MODEL_COST_MAP=True` (no cost-map download), no
database, one uvicorn worker, telemetry off, access log and library log at warning (as the
lollms-server under test logs at warning). `python bench/litellm_proxy.py` only installs it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

VERSION = "1.108.7"
DEFAULT_VENV = Path(__file__).resolve().parent.parent / ".bench-venvs" / "litellm"
MASTER_KEY = "sk-bench-master"
MODEL = "mock"
HEALTH = "/health/liveliness"
CONFIG = """\
model_list:
  - model_name: {model}
    litellm_params:
      model: openai/{model}
      api_base: http://127.0.0.1:{upstream}/v1
      api_key: not-needed
litellm_settings:
  telemetry: false
  drop_params: true
general_settings:
  master_key: {key}
"""
LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
    "handlers": {"err": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "uvicorn": {"handlers": ["err"], "level": "WARNING"},
        "uvicorn.access": {"handlers": ["err"], "level": "WARNING", "propagate": False},
    },
}


def executable(venv: Path) -> Path:
    """The `litellm` command of `venv`."""
    return venv / "bin" / "litellm"


def ensure_installed(venv: Path = DEFAULT_VENV) -> str:
    """Create `venv` and install litellm[proxy] there unless present; returns its version."""
    python = venv / "bin" / "python"
    if not executable(venv).exists():
        print(f"installing litellm[proxy]=={VERSION} into {venv} (~750 MB)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, f"litellm[proxy]=={VERSION}"], check=True, timeout=1200)
    probe = "import importlib.metadata as m; print(m.version('litellm'))"
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def prepare(folder: Path, venv: Path, port: int, upstream: int) -> tuple[list[str], dict[str, str]]:
    """Write the config files into `folder`; returns the command and extra environment."""
    config = folder / "litellm.yaml"
    config.write_text(CONFIG.format(model=MODEL, upstream=upstream, key=MASTER_KEY))
    log_config = folder / "litellm-log.json"
    log_config.write_text(json.dumps(LOG_CONFIG))
    command = [str(executable(venv)), "--config", str(config), "--host", "127.0.0.1"]
    command += ["--port", str(port), "--num_workers", "1", "--log_config", str(log_config)]
    env = {
        "LITELLM_MASTER_KEY": MASTER_KEY,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "WARNING",
        "LITELLM_TELEMETRY": "False",
        "DISABLE_SCHEMA_UPDATE": "True",
        "HOME": str(folder),
        "NO_PROXY": "*",
    }
    return command, env


def main() -> None:
    """Install LiteLLM into its venv (or report the version already there)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    args = parser.parse_args()
    print(ensure_installed(args.venv))


if __name__ == "__main__":
    main()
