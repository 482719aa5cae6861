"""Personalities: lollms personality folders (config.yaml, assets/, scripts/workflow.py)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from marshmallow import EXCLUDE, Schema, ValidationError, fields

from ..bindings import ChatMessage
from ..errors import NotFound
from ..whole_number import Whole
from .functions import import_file

log = logging.getLogger(__name__)

# upstream lollms sampling keys -> the parameter names bindings receive
SAMPLING_KEYS = {
    "model_temperature": "temperature",
    "model_n_predicts": "max_tokens",
    "model_top_k": "top_k",
    "model_top_p": "top_p",
    "model_repeat_penalty": "repeat_penalty",
    "model_repeat_last_n": "repeat_last_n",
}
ICON_NAMES = ("logo.png", "logo.svg", "logo.jpg", "logo.webp", "icon.png", "icon.svg")
WORKFLOW_FILE = Path("scripts") / "workflow.py"
SEPARATOR = "@"  # `<personality>@<model ref>` on the OpenAI and Ollama faces


class PersonalityFileSchema(Schema):
    """The upstream lollms personality `config.yaml` fields (unknown ones are ignored)."""

    class Meta:
        unknown = EXCLUDE

    name = fields.String(required=True)
    author = fields.String(load_default="")
    version = fields.Raw(load_default="")
    category = fields.String(load_default="")
    language = fields.String(load_default="")
    license = fields.String(load_default="")
    creation_date = fields.Raw(load_default="")
    last_update_date = fields.Raw(load_default="")
    tags = fields.List(fields.String(), load_default=list)
    personality_description = fields.String(load_default="")
    personality_conditioning = fields.String(load_default="")
    welcome_message = fields.String(load_default="")
    user_name = fields.String(load_default="")
    user_message_prefix = fields.String(load_default="")
    ai_message_prefix = fields.String(load_default="")
    link_text = fields.String(load_default="")
    disclaimer = fields.String(load_default="")
    help = fields.String(load_default="")
    dependencies = fields.List(fields.String(), load_default=list)
    prompts_list = fields.List(fields.String(), load_default=list)
    recommended_binding = fields.String(load_default="", allow_none=True)
    recommended_model = fields.String(load_default="", allow_none=True)
    anti_prompts = fields.List(fields.String(), load_default=list)
    model_temperature = fields.Float(load_default=None, allow_none=True)
    model_n_predicts = Whole(load_default=None, allow_none=True)
    model_top_k = Whole(load_default=None, allow_none=True)
    model_top_p = fields.Float(load_default=None, allow_none=True)
    model_repeat_penalty = fields.Float(load_default=None, allow_none=True)
    model_repeat_last_n = Whole(load_default=None, allow_none=True)


@dataclass(frozen=True)
class Personality:
    """A loaded personality."""

    name: str
    author: str = ""
    version: str = ""
    category: str = ""
    language: str = ""
    tags: tuple[str, ...] = ()
    description: str = ""
    conditioning: str = ""
    welcome_message: str = ""
    anti_prompts: tuple[str, ...] = ()
    sampling: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)  # other upstream fields, as read
    icon: Path | None = None
    workflow: Callable[..., Any] | None = None
    script: str = ""  # where the workflow comes from, named in its errors

    def to_dict(self) -> dict[str, Any]:
        """The public description returned by list_personalities."""
        return {
            "name": self.name,
            "author": self.author,
            "version": self.version,
            "category": self.category,
            "language": self.language,
            "tags": list(self.tags),
            "description": self.description,
            "welcome_message": self.welcome_message,
            "anti_prompts": list(self.anti_prompts),
            "sampling": dict(self.sampling),
            "scripted": self.workflow is not None,
            "has_icon": self.icon is not None,
            "source": self.source,
            **{key: value for key, value in self.extra.items() if value not in ("", None, [])},
        }


_EXTRA_FIELDS = (
    "license",
    "creation_date",
    "last_update_date",
    "user_name",
    "user_message_prefix",
    "ai_message_prefix",
    "link_text",
    "disclaimer",
    "help",
    "dependencies",
    "prompts_list",
    "recommended_binding",
    "recommended_model",
)


def personality_from_mapping(
    raw: Mapping[str, Any],
    source: str,
    *,
    icon: Path | None = None,
    workflow: Callable[..., Any] | None = None,
    script: str = "",
) -> Personality:
    """Validate an upstream-shaped mapping into a Personality."""
    data = PersonalityFileSchema().load({k: v for k, v in raw.items() if k != "run_workflow"})
    sampling = {
        ours: data[theirs] for theirs, ours in SAMPLING_KEYS.items() if data[theirs] is not None
    }
    extra = {key: data[key] for key in _EXTRA_FIELDS}
    for key in ("creation_date", "last_update_date"):
        extra[key] = str(extra[key])
    return Personality(
        name=data["name"],
        author=data["author"],
        version=str(data["version"]),
        category=data["category"],
        language=data["language"],
        tags=tuple(data["tags"]),
        description=data["personality_description"],
        conditioning=data["personality_conditioning"],
        welcome_message=data["welcome_message"],
        anti_prompts=tuple(data["anti_prompts"]),
        sampling=sampling,
        source=source,
        extra=extra,
        icon=icon,
        workflow=workflow,
        script=script,
    )


def split_personality(ref: str | None) -> tuple[str | None, str | None]:
    """`<personality>@<model ref>` -> (personality, model ref); no `@` -> (None, ref)."""
    if ref and SEPARATOR in ref:
        personality, _, rest = ref.partition(SEPARATOR)
        return personality or None, rest or None
    return None, ref


class PersonalityStore:
    """Personalities by name from every source; problems (and collisions) kept for display."""

    def __init__(self) -> None:
        self.by_name: dict[str, Personality] = {}
        self.problems: list[str] = []

    def get(self, name: str) -> Personality:
        """The personality called `name`, or NotFound."""
        try:
            return self.by_name[name]
        except KeyError:
            known = ", ".join(sorted(self.by_name)) or "none installed"
            raise NotFound(
                f"no personality named {name!r}; personalities: {known}", param="personality"
            ) from None

    def add(self, personality: Personality) -> None:
        """Add one personality; a name already taken is reported and the first one kept."""
        existing = self.by_name.get(personality.name)
        if existing is not None:
            self.problems.append(
                f"personality {personality.name!r} from {personality.source} ignored: "
                f"already defined by {existing.source}"
            )
            log.warning("%s", self.problems[-1])
            return
        self.by_name[personality.name] = personality

    def replace_with(self, other: PersonalityStore) -> None:
        """Take `other`'s contents (a reload); holders of this store see the new set."""
        self.by_name, self.problems = other.by_name, other.problems

    def load_folders(self, folders: Iterable[Path]) -> None:
        """Read every `<folder>/<name>/config.yaml` (one level deep, category folders too)."""
        for folder in folders:
            if not folder.is_dir():
                continue
            for config_file in sorted(folder.glob("*/config.yaml")) + sorted(
                folder.glob("*/*/config.yaml")
            ):
                self._load_file(config_file)

    def load_mappings(self, items: Iterable[Mapping[str, Any]], source: str) -> None:
        """Add personalities given as mappings (from a plugin; `run_workflow` may be a callable)."""
        for raw in items:
            workflow = raw.get("run_workflow")
            try:
                if workflow is not None and not callable(workflow):
                    raise ValidationError("run_workflow must be a callable")
                self.add(personality_from_mapping(raw, source, workflow=workflow, script=source))
            except ValidationError as exc:
                self.problems.append(f"{source}: invalid personality: {exc.messages}")

    def _load_file(self, path: Path) -> None:
        folder = path.parent
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
            if not isinstance(raw, Mapping):
                raise ValueError("config.yaml is not a mapping")
            workflow, script = _workflow_of(folder)
            icon = _icon_of(folder)
            personality = personality_from_mapping(
                raw, str(folder), icon=icon, workflow=workflow, script=script
            )
            self.add(personality)
        except (OSError, ValueError, yaml.YAMLError, ValidationError) as exc:
            detail = exc.messages if isinstance(exc, ValidationError) else exc
            self.problems.append(f"{path}: {detail}")
            log.warning("personality %s not loaded: %s", path, detail)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - a script that fails to
            # import (or calls sys.exit() as it does) is reported
            self.problems.append(f"{folder / WORKFLOW_FILE}: {type(exc).__name__}: {exc}")
            log.warning("personality script %s not loaded: %s", folder / WORKFLOW_FILE, exc)


def _icon_of(folder: Path) -> Path | None:
    for name in ICON_NAMES:
        if (candidate := folder / "assets" / name).is_file():
            return candidate
    return None


def _workflow_of(folder: Path) -> tuple[Callable[..., Any] | None, str]:
    script = folder / WORKFLOW_FILE
    if not script.is_file():
        return None, ""
    module = import_file(script, f"lollms_personalities.{folder.name}.workflow")
    workflow = getattr(module, "run_workflow", None)
    if not callable(workflow):
        raise ValueError(f"{script} defines no run_workflow(prompt, params, context)")
    return workflow, str(script)


def load_personalities(
    folders: Iterable[Path],
    plugin_items: Iterable[tuple[str, Iterable[Mapping[str, Any]]]],
    examples: Iterable[Path] = (),
) -> PersonalityStore:
    """Every source in the documented order; the first of two with one name wins.

    Order: `folders` in order (the data dir's, then `[personalities] folders`), then plugins
    by plugin name, then the shipped examples (so any source can replace an example).
    """
    store = PersonalityStore()
    store.load_folders(folders)
    for plugin_name, items in sorted(plugin_items, key=lambda item: item[0]):
        store.load_mappings(items, f"plugin {plugin_name}")
    store.load_folders(examples)
    return store


def apply_personality(
    personality: Personality | None,
    messages: Sequence[ChatMessage],
    parameters: Mapping[str, Any],
) -> tuple[tuple[ChatMessage, ...], dict[str, Any]]:
    """Prepend the personality's system message and fill in its sampling defaults."""
    params = dict(parameters)
    if personality is None:
        return tuple(messages), params
    merged = list(messages)
    if personality.conditioning:
        if merged and merged[0].role == "system":
            first = merged[0]
            merged[0] = dataclasses.replace(
                first, content=f"{personality.conditioning}\n\n{first.content}"
            )
        else:
            merged.insert(0, ChatMessage("system", personality.conditioning))
    for key, value in personality.sampling.items():
        params.setdefault(key, value)
    if personality.anti_prompts:
        stop = params.get("stop") or []
        stop = [stop] if isinstance(stop, str) else list(stop)
        params["stop"] = stop + [p for p in personality.anti_prompts if p not in stop]
    return tuple(merged), params
