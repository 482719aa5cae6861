"""The models side of a `llamacpp` instance: its folders, their GGUF files, what settings name.

A mixin of LlamaCppBinding (binding.py), which holds the processes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from lollms_server.sdk import (
    BackendError,
    BackendUnavailable,
    BindingContext,
    ContextLengthExceeded,
    GenerationRequest,
    ModelNotFound,
    NotSupported,
)

from .catalog import Catalog, ModelFile
from .settings import LlamaCppConfig
from .tool_use import lists_tools

#: Settings that name models (lists, or tables by model name).
MODEL_SETTINGS = ("embedding_models", "preload", "chat_templates", "model_extra_args")
#: Tokenizers (SentencePiece, byte-level BPE) whose tokens each spell at least as many bytes as
#: the characters they cover; WordPiece and Unigram drop whitespace, so they have no such bound.
SPELLING_TOKENIZERS = ("llama", "gpt2")


class ModelFolders:
    """Folders of GGUF files, looked up by model name."""

    instance_name: str
    settings: LlamaCppConfig
    context: BindingContext
    _catalog: Catalog | None

    def folders(self) -> list[Path]:
        """The models folders: `models_folders`, else `<data dir>/models/ttt`."""
        configured = self.settings.models_folders
        if configured:
            return [Path(folder).expanduser() for folder in configured]
        return [self.context.models_dir / "ttt"]

    @property
    def catalog(self) -> Catalog:
        """The catalog of the current folders (rebuilt when they change)."""
        folders = self.folders()
        if self._catalog is None or self._catalog.folders != folders:
            self._catalog = Catalog(folders)
        return self._catalog

    async def _scan(self) -> dict[str, ModelFile]:
        catalog = self.catalog
        if not catalog.existing_folders():
            shown = ", ".join(str(folder) for folder in catalog.folders)
            raise BackendUnavailable(
                f"no models folder of {self.instance_name!r} exists ({shown})",
                binding=self.instance_name,
            )
        return await asyncio.to_thread(catalog.scan)

    async def _file(self, model: str) -> ModelFile:
        files = await self._scan()
        found = files.get(model)
        if found is None:
            listed = ", ".join(sorted(files)) or "none"
            raise ModelNotFound(
                f"{self.instance_name!r} has no model {model!r}; models: {listed}",
                binding=self.instance_name,
                param="model",
            )
        if found.header is None:
            raise BackendError(
                f"model {model!r} of {self.instance_name!r} is not a readable GGUF file: "
                f"{found.error}",
                binding=self.instance_name,
            )
        return found

    def is_embedding(self, file: ModelFile) -> bool:
        """Listed in `embedding_models`, or a GGUF that declares a pooling type."""
        return file.name in self.settings.embedding_models or file.declares_embedding

    def missing_models(self, files: Mapping[str, ModelFile]) -> list[str]:
        """`<setting>: '<model>'` for each model a setting names that no folder holds."""
        named = {setting: list(getattr(self.settings, setting)) for setting in MODEL_SETTINGS}
        return [
            f"{setting}: {model!r}"
            for setting, models in named.items()
            for model in models
            if model not in files
        ]

    def context_length(self, model: str) -> int | None:
        """One slot's context (binding.py)."""
        raise NotImplementedError

    async def refuse_unfittable(self, request: GenerationRequest) -> None:
        """400 context_length_exceeded before llama.cpp tokenizes a prompt that cannot fit one
        slot even at the vocabulary's longest token per token (tokenizing megabytes would hold
        the model for seconds first)."""
        chars = prompt_chars(request)
        slot = self.context_length(request.model)
        if slot and chars <= slot:  # no token is shorter than one character
            return
        header = (await self._file(request.model)).header
        longest = header.longest_token_bytes if header else None
        if (
            not header
            or not longest
            or header.get("tokenizer.ggml.model") not in SPELLING_TOKENIZERS
        ):
            return
        n_ctx = self.settings.n_ctx or header.arch_value("context_length")
        if not isinstance(n_ctx, int) or n_ctx <= 0:
            return
        context = slot_tokens(n_ctx, self.settings.n_parallel)
        if chars > most_chars(context, longest):
            raise ContextLengthExceeded(
                f"the prompt is too long for the model's maximum context length: {chars} "
                f"characters cannot fit the {context} tokens of a slot of {request.model!r} "
                f"(its longest token spells {longest} bytes)",
                binding=self.instance_name,
                param="messages",
            )

    def chat_template(self, model: str) -> str | None:
        """The model's `chat_templates` entry, else `chat_template`; None: the GGUF's own."""
        return self.settings.chat_templates.get(model) or self.settings.chat_template or None

    def serves_tools(self, file: ModelFile) -> bool:
        """True when the model's chat template (configured, else the GGUF's) lists tools."""
        configured = self.chat_template(file.name)
        if configured:
            return lists_tools(configured)
        own = file.header.get("tokenizer.chat_template") if file.header else None
        return isinstance(own, str) and lists_tools(own)

    def require_tools(self, file: ModelFile) -> None:
        """A 501 naming the fix unless the model's chat template renders tools."""
        if self.serves_tools(file):
            return
        model = file.name
        configured = self.chat_template(model)
        which = "the chat template set for it" if configured else "the chat template in its GGUF"
        raise NotSupported(
            f"model {model!r} of {self.instance_name!r} cannot call tools: {which} does not "
            "render them (llama.cpp would drop them); set "
            f'chat_templates = {{ "{model}" = "chatml-tools" }} in [bindings.{self.instance_name}] '
            '(or chat_template = "chatml-tools" for all its models)',
            binding=self.instance_name,
            param="tools",
        )


def slot_tokens(n_ctx: int, n_parallel: int) -> int:
    """The most tokens llama.cpp may give one slot: `n_ctx` padded to 256, split over slots."""
    return -(-n_ctx // 256) * 256 // n_parallel


def most_chars(tokens: int, longest: int) -> int:
    """The most characters `tokens` tokens can spell, twice over (a margin for normalizers)."""
    return 2 * tokens * longest


def prompt_chars(request: GenerationRequest) -> int:
    """Characters of everything a chat template renders: messages, tool calls, tool definitions."""
    total = 0
    for message in request.messages:
        total += len(message.content)
        total += sum(_chars((call.name, call.arguments)) for call in message.tool_calls)
    return total + _chars(request.parameters.get("tools"))


def _chars(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, Mapping):
        return sum(_chars(key) + _chars(item) for key, item in value.items())
    if isinstance(value, Iterable):
        return sum(_chars(item) for item in value)
    return 0
