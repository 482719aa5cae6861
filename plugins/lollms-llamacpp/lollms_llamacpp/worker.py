"""One llama.cpp server for one model, in its own process: `python -m lollms_llamacpp.worker`.

It starts xllamacpp's server on 127.0.0.1 (a free port), prints one line
`LOLLMS_WORKER_READY {"url": ..., "pid": ...}` on stdout, then serves until SIGTERM or until its
stdin closes (so it never outlives the lollms-server that spawned it, even after a kill -9).
The first line of stdin is an API key the server will require (so other local programs, or web
pages through CORS, cannot use it); an empty line means none. It is never put on the command
line, where `ps` would show it.
llama.cpp's own log goes to stderr, which the binding reads into its logger.
"""

from __future__ import annotations

import argparse
import enum
import json
import os
import signal
import sys
from types import FrameType
from typing import Any

READY = "LOLLMS_WORKER_READY "
ALIAS = "model"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The worker's command line."""
    parser = argparse.ArgumentParser(prog="python -m lollms_llamacpp.worker")
    parser.add_argument("--model", required=True, help="path of the .gguf file")
    parser.add_argument("--alias", default=ALIAS, help="model name the server answers to")
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--n-parallel", type=int, default=2)
    parser.add_argument("--n-threads", type=int, default=None)
    parser.add_argument("--n-gpu-layers", type=int, default=None)
    parser.add_argument("--embedding", action="store_true", help="serve /v1/embeddings")
    parser.add_argument("--chat-template", default=None, help="Jinja chat template text")
    parser.add_argument("--chat-template-file", default=None, help="file of a Jinja chat template")
    parser.add_argument("--extra", default="{}", help="JSON object of CommonParams attributes")
    return parser.parse_args(argv)


def set_param(params: Any, dotted: str, value: Any) -> None:
    """Set a (dotted) CommonParams attribute, converting names to enum members."""
    *parents, last = dotted.split(".")
    target = params
    for name in parents:
        target = getattr(target, name)
    current = getattr(target, last)
    if isinstance(current, enum.Enum):
        kind = type(current)
        value = kind[value] if isinstance(value, str) else kind(value)
    elif isinstance(current, set):
        value = {value}
    setattr(target, last, value)


def build_params(args: argparse.Namespace, api_key: str = "") -> Any:
    """The xllamacpp.CommonParams of a worker."""
    import xllamacpp  # type: ignore[import-untyped, import-not-found, unused-ignore]

    params = xllamacpp.CommonParams()
    if api_key:
        params.api_keys = [api_key]
    params.model.path = args.model
    params.hostnames = ["127.0.0.1"]
    params.port = 0
    params.model_alias = {args.alias}
    params.n_ctx = args.n_ctx
    params.n_parallel = args.n_parallel
    params.use_jinja = True  # tools and tool_choice need the Jinja chat templates
    if args.chat_template_file:
        with open(args.chat_template_file, encoding="utf-8") as file:
            params.chat_template = file.read()
    elif args.chat_template:
        params.chat_template = args.chat_template
    if args.n_threads:
        params.cpuparams.n_threads = args.n_threads
        params.cpuparams_batch.n_threads = args.n_threads
    if args.n_gpu_layers is not None:
        params.n_gpu_layers = args.n_gpu_layers
    if args.embedding:
        params.embedding = True
        unspecified = xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_UNSPECIFIED
        if params.pooling_type == unspecified:
            # generative models declare no pooling; mean pooling makes them OpenAI-compatible
            params.pooling_type = xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN
    for dotted, value in json.loads(args.extra).items():
        set_param(params, dotted, value)
    return params


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM or stdin EOF; exit 2 on bad arguments, 1 if the model won't load."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    api_key = sys.stdin.readline().strip()
    try:
        params = build_params(args, api_key)
    except (AttributeError, KeyError, TypeError, ValueError, OSError) as exc:
        print(f"lollms_llamacpp.worker: bad parameter: {exc!r}", file=sys.stderr, flush=True)
        return 2
    import xllamacpp

    try:
        server = xllamacpp.Server(params)
    except Exception as exc:  # noqa: BLE001 - any load failure is reported to the parent
        print(f"lollms_llamacpp.worker: cannot serve {args.model}: {exc}", file=sys.stderr)
        return 1
    address = str(server.listening_address)
    url = address if address.startswith("http") else f"http://{address}"
    print(READY + json.dumps({"url": url, "pid": os.getpid()}), flush=True)
    try:
        while sys.stdin.buffer.read(65536):
            pass
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        # No graceful `del server`: its destructor waits for generations in flight while
        # holding the GIL. The process ending is what frees the model; nothing needs saving.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
