"""Personalities: lollms `config.yaml` folders turned into system prompts and sampling defaults."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from marshmallow import EXCLUDE, Schema, ValidationError, fields

from .errors import NotFound

log = logging.getLogger(__name__)

# upstream lollms sampling keys -> the parameter names bindings receive
SAMPLING_KEYS = {
    "model_temperature": "temperature",
    "model_n_predicts": "max_tokens",
    "model_top_k": "top_k",
    "model_top_p": "top_p",
    "model_repeat_penalty": "repeat_penalty",
}


class PersonalityFileSchema(Schema):
    """The upstream lollms personality `config.yaml` fields we use (others are ignored)."""

    class Meta:
        unknown = EXCLUDE

    name = fields.String(required=True)
    author = fields.String(load_default="")
    version = fields.Raw(load_default="")
    category = fields.String(load_default="")
    language = fields.String(load_default="")
    tags = fields.List(fields.String(), load_default=list)
    personality_description = fields.String(load_default="")
    personality_conditioning = fields.String(load_default="")
    welcome_message = fields.String(load_default="")
    anti_prompts = fields.List(fields.String(), load_default=list)
    model_temperature = fields.Float(load_default=None, allow_none=True)
    model_n_predicts = fields.Integer(load_default=None, allow_none=True)
    model_top_k = fields.Integer(load_default=None, allow_none=True)
    model_top_p = fields.Float(load_default=None, allow_none=True)
    model_repeat_penalty = fields.Float(load_default=None, allow_none=True)


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
            "sampling": dict(self.sampling),
            "source": self.source,
        }


def personality_from_mapping(raw: Mapping[str, Any], source: str) -> Personality:
    """Validate an upstream-shaped mapping into a Personality."""
    data = PersonalityFileSchema().load(dict(raw))
    sampling = {
        ours: data[theirs] for theirs, ours in SAMPLING_KEYS.items() if data[theirs] is not None
    }
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
    )


class PersonalityStore:
    """Personalities by name, read from folders and plugins; problems kept for display."""

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
            return
        self.by_name[personality.name] = personality

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
        """Add personalities given as mappings (from a plugin)."""
        for raw in items:
            try:
                self.add(personality_from_mapping(raw, source))
            except ValidationError as exc:
                self.problems.append(f"{source}: invalid personality: {exc.messages}")

    def _load_file(self, path: Path) -> None:
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
            if not isinstance(raw, Mapping):
                raise ValueError("config.yaml is not a mapping")
            self.add(personality_from_mapping(raw, str(path.parent)))
        except (OSError, ValueError, yaml.YAMLError, ValidationError) as exc:
            detail = exc.messages if isinstance(exc, ValidationError) else exc
            self.problems.append(f"{path}: {detail}")
            log.warning("personality %s not loaded: %s", path, detail)
