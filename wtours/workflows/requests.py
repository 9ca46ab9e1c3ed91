"""What every workflow request shares: the base model, how a field names its command-line flag, the option
blocks several commands take (which videos, which encoder), and validation errors that name the flag.

A request field declares, once, its type, default, bounds and help (``Field(..., ge=, description=)``); its
flag is ``--`` and the field's name with dashes, unless a `Flag` in its ``Annotated`` metadata says otherwise
(``--yt-dlp`` for ``ytdlp_args``, a short alias ``-m``, a positional argument, click's path checks). The CLI
builds every Typer option from these (``wtours.cli``), and ``tests/workflows/test_cli_options.py`` holds each
Typer option against its field: a default, a bound or a help text cannot drift between the two.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from wtours.errors import WtoursError


@dataclass(frozen=True)
class Flag:
    """How a request field is given on the command line: its option names (the first is the one messages
    name; ``--a/--no-a`` for an on/off pair), or a positional ``argument``; ``click`` holds click's own checks
    of the value (``exists``, ``dir_okay``, ``file_okay``, ``envvar``)."""

    names: tuple[str, ...] = ()
    argument: bool = False
    click: dict[str, Any] = field(default_factory=dict)


def flag(*names: str, **click: Any) -> Flag:
    """``Annotated[int, flag("--detector-fps")]``: the option's names, when not ``--<field-name>``."""
    return Flag(tuple(names), False, click)


def argument(**click: Any) -> Flag:
    """``Annotated[Path, argument(exists=True)]``: a positional argument rather than an option."""
    return Flag((), True, click)


def flag_of(model: type[BaseModel], name: str) -> Flag:
    """The field's `Flag`, its option names filled in (``--<name>`` unless declared)."""
    declared = next((item for item in model.model_fields[name].metadata if isinstance(item, Flag)), Flag())
    if declared.argument or declared.names:
        return declared
    return Flag((f"--{name.replace('_', '-')}",), False, declared.click)


def flag_name(model: type[BaseModel], name: str) -> str:
    """What a message calls the field: its first option name (without the ``--no-`` half), or the
    argument's name in capitals, as click's usage line shows it."""
    declared = flag_of(model, name)
    if declared.argument:
        return name.upper()
    return declared.names[0].split("/")[0]


class Request(BaseModel):
    """Base of every command's request: unknown fields are an error, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, arbitrary_types_allowed=True)

    @classmethod
    def parse(cls, **values: Any) -> Request:
        """The request from field values, or a WtoursError naming the flag of the first wrong one (what the
        user typed, not the field's Python name)."""
        try:
            return cls(**values)
        except ValidationError as err:
            raise WtoursError(validation_message(cls, err)) from None


class PerVideoOutcome:
    """A result holding one outcome per video (``results``, each with ``ok``): ok when all are, exit code 1
    when any failed (the others still ran)."""

    results: list[Any]

    @property
    def ok(self) -> bool:
        return all(result.ok for result in self.results)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1


def validation_message(model: type[BaseModel], err: ValidationError) -> str:
    """``--threshold: Input should be greater than or equal to 0.1``; ``--executor 'x': use local or ray``."""
    problem = err.errors()[0]
    location = [part for part in problem["loc"] if isinstance(part, str)]
    name = location[0] if location else None
    where = flag_name(model, name) if name in model.model_fields else (name or "options")
    if problem["type"] == "literal_error":
        expected = typing.get_args(_plain(model.model_fields[name].annotation)) if name in model.model_fields else ()
        choices = " or ".join(str(choice) for choice in expected) or problem["msg"]
        return f"{where} {problem['input']!r}: use {choices}"
    if problem["type"] == "value_error":
        return f"{where} {_shown(problem['input'])}: {problem['msg'].removeprefix('Value error, ')}"
    return f"{where}: {problem['msg']}"


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _plain(annotation: Any) -> Any:
    """``Literal[...]`` out of ``Literal[...] | None``."""
    if typing.get_origin(annotation) is Literal:
        return annotation
    for member in typing.get_args(annotation):
        if typing.get_origin(member) is Literal:
            return member
    return annotation


def split_ids(values: Sequence[str] | None) -> list[str] | None:
    """``["a,b", "c"]`` -> ``["a", "b", "c"]``: an option repeated, or given ids separated by commas."""
    if not values:
        return None
    return [part.strip() for value in values for part in value.split(",") if part.strip()] or None


# --- option blocks several commands share ---------------------------------------------------------------


DataDir = Annotated[Path | None, flag("--data-dir", "-d", envvar="WTOURS_DATA_DIR")]
DATA_DIR_HELP = "Data directory holding videos/, analysis/, clips/. Default: ./data (or $WTOURS_DATA_DIR)."
ManifestPath = Annotated[Path | None, flag("--manifest", "-m")]
MANIFEST_HELP = (
    "Manifest YAML listing the videos and their sources. Default: $WTOURS_MANIFEST, else ./data_manifest.yaml if "
    "present, else the shipped Walking Tours manifest."
)
Group = Annotated[str | None, flag("--group", "-g")]
GROUP_HELP = "Restrict to one manifest group, e.g. walking_tours."


class VideosRequest(Request):
    """Which videos of a manifest a command works on (the rule is wtours.selection's), in which data directory."""

    manifest: ManifestPath = Field(None, description=MANIFEST_HELP)
    only: list[str] | None = Field(
        None, description="Restrict to these video ids (repeat the option or separate ids by commas)."
    )
    group: Group = Field(None, description=GROUP_HELP)
    data_dir: DataDir = Field(None, description=DATA_DIR_HELP)

    @field_validator("only", mode="before")
    @classmethod
    def _split_ids(cls, values: Any) -> Any:
        return split_ids(values) if isinstance(values, (list, tuple)) else values


EncoderPath = Annotated[Path, argument(exists=True)]
ENCODER_HELP = "A run folder (runs/<name>) or its encoder.safetensors (+ .json beside it)."
DEVICE_HELP = "auto (GPU if present), cuda or cpu."
ARCH_HELP = "timm architecture; default: the one named in the weights file."
Device = Literal["auto", "cuda", "cpu"]
