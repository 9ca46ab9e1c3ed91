"""The data manifest: which videos exist, where to get them, and what to expect of them.

A manifest is YAML::

    version: 1
    defaults: {group: walking_tours, license: CC-BY-4.0}
    videos:
      - id: venice                       # safe file name: letters, digits, . _ -
        city: Venice
        duration: "1:50:00"              # expected; seconds or H:MM:SS; catches truncated files
        sources:                         # tried in order until one verifies
          - youtube: fGX0Te6pFvk
          - figshare: 25189275
            file: venice.mp4
          - url: https://example.org/venice.mp4
          - path: /mnt/videos/venice.mp4 # relative paths are relative to the manifest; copied into videos/
            link: true                   # optional: hard-link instead (no second copy; both names share the file)

A source may also be written as a plain string: an http(s) URL (YouTube links are recognised)
or a local path. Every problem is reported at once, each with its line and entry. YAML anchors and
aliases (``&x`` / ``*x``) are refused (a manifest never needs them, and nested aliases expand
exponentially), as are files over 2 MiB (ten thousand videos fit in one).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from wtours.errors import WtoursError

# The shipped Walking Tours manifest (a copy of the repository's top-level data_manifest.yaml).
PACKAGED_MANIFEST = Path(__file__).resolve().parent / "data_manifest.yaml"
MANIFEST_ENV = "WTOURS_MANIFEST"


def default_manifest_path() -> Path:
    """``$WTOURS_MANIFEST``, else ``./data_manifest.yaml`` if present, else the shipped manifest."""
    if env := os.environ.get(MANIFEST_ENV):
        return Path(env)
    local = Path("data_manifest.yaml")
    return local if local.is_file() else PACKAGED_MANIFEST

MAX_MANIFEST_BYTES = 2 << 20
MAX_NESTING = 32  # a manifest nests 4 levels deep; PyYAML's composer recurses (and overflows) on deep input

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_YOUTUBE_ID = re.compile(r"^[A-Za-z0-9_-]{11}$")
_YOUTUBE_URL = re.compile(
    r"^https?://(?:www\.|m\.)?(?:youtube\.com/(?:watch\?(?:.*&)?v=|shorts/|embed/|live/)|youtu\.be/)"
    r"(?P<id>[A-Za-z0-9_-]{11})"
)
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class YouTubeSource(_Strict):
    """A YouTube video by its 11-character id."""

    youtube: str

    @field_validator("youtube")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not _YOUTUBE_ID.match(value):
            raise ValueError(f"not a YouTube video id: {value!r} (expected 11 characters of A-Z a-z 0-9 _ -)")
        return value

    @property
    def kind(self) -> str:
        return "youtube"

    @property
    def location(self) -> str:
        return f"https://www.youtube.com/watch?v={self.youtube}"


class UrlSource(_Strict):
    """Any http(s) URL yt-dlp can handle: a direct file, a page with a <video> tag, a video site."""

    url: str

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"not an http(s) URL: {value!r}")
        return value

    @property
    def kind(self) -> str:
        return "url"

    @property
    def location(self) -> str:
        return self.url


class FigshareSource(_Strict):
    """A file of a figshare article (the Walking Tours authors' mirror), resolved at fetch time."""

    figshare: int = Field(gt=0, description="figshare article id")
    file: str = Field(min_length=1, description="file name inside the article")

    @property
    def kind(self) -> str:
        return "figshare"

    @property
    def location(self) -> str:
        return f"figshare:{self.figshare}/{self.file}"


class FileSource(_Strict):
    """A video already on a local or mounted disk: copied into the store (reflinked where the file system
    can), or hard-linked with ``link: true`` — no second copy, but an in-place edit of either shows in both."""

    path: Path
    link: bool = False

    @property
    def kind(self) -> str:
        return "file"

    @property
    def location(self) -> str:
        return str(self.path)


_SOURCE_KEYS = {"youtube": "youtube", "url": "url", "figshare": "figshare", "path": "file"}


def _source_tag(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return getattr(value, "kind", None)
    if isinstance(value, dict):
        tags = {_SOURCE_KEYS[key] for key in value if key in _SOURCE_KEYS}
        if len(tags) == 1:
            return tags.pop()
    return None


def _source_from_string(value: Any) -> Any:
    """Expand the string shorthand of a source into its mapping form."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if match := _YOUTUBE_URL.match(text):
        return {"youtube": match["id"]}
    if match := _SCHEME.match(text):
        if match["scheme"].lower() in ("http", "https"):
            return {"url": text}
        raise ValueError(f"unknown source kind {match['scheme']!r} in {text!r} (use http(s), youtube or a path)")
    return {"path": text}


Source = Annotated[
    Annotated[YouTubeSource, Tag("youtube")]
    | Annotated[UrlSource, Tag("url")]
    | Annotated[FigshareSource, Tag("figshare")]
    | Annotated[FileSource, Tag("file")],
    Discriminator(
        _source_tag,
        custom_error_type="unknown_source_kind",
        custom_error_message="a source needs exactly one of the keys youtube, url, figshare (with file), path",
    ),
]


def parse_duration(value: Any) -> float | None:
    """Seconds from a number or an ``[H:]MM:SS`` string."""
    if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
        return None if value is None else float(value)
    if isinstance(value, str) and re.fullmatch(r"\d+(:\d{1,2}){0,2}(\.\d+)?", value.strip()):
        seconds = 0.0
        for part in value.strip().split(":"):
            seconds = seconds * 60 + float(part)
        return seconds
    raise ValueError(f"not a duration: {value!r} (use seconds or H:MM:SS)")


class VideoEntry(_Strict):
    id: str = Field(description="unique, safe file name: letters, digits, '.', '_', '-'")
    group: str = Field("default", min_length=1, description="set the video belongs to, e.g. walking_tours")
    title: str | None = None
    city: str | None = None
    license: str | None = None
    duration: float | None = Field(None, gt=0, description="expected duration in seconds")
    notes: str | None = None
    sources: list[Source] = Field(min_length=1)

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not _SAFE_ID.match(value) or value in (".", ".."):
            raise ValueError(
                f"unsafe id {value!r}: use 1-100 letters, digits, '.', '_' or '-', not starting with '.' or '-'"
            )
        return value

    @field_validator("duration", mode="before")
    @classmethod
    def _parse_duration(cls, value: Any) -> float | None:
        return parse_duration(value)

    @field_validator("sources", mode="before")
    @classmethod
    def _expand_strings(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [_source_from_string(item) for item in value]
        return value


class Defaults(_Strict):
    group: str | None = None
    license: str | None = None


class Manifest(_Strict):
    version: Literal[1] = 1
    defaults: Defaults = Defaults()
    videos: list[VideoEntry] = Field(min_length=1)
    base_dir: Path = Field(Path("."), exclude=True, description="folder that relative paths are resolved against")

    @model_validator(mode="before")
    @classmethod
    def _apply_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("defaults"), dict):
            return data
        defaults = {k: v for k, v in data["defaults"].items() if k in ("group", "license") and v is not None}
        videos = data.get("videos")
        if isinstance(videos, list):
            data = {**data, "videos": [{**defaults, **v} if isinstance(v, dict) else v for v in videos]}
        return data

    @model_validator(mode="after")
    def _unique_ids(self) -> Manifest:
        seen: set[str] = set()
        for video in self.videos:
            # Ids become file names; two ids differing only in case collide on some file systems.
            key = video.id.lower()
            if key in seen:
                raise ValueError(f"duplicate id {video.id!r}")
            seen.add(key)
        return self

    def resolve_path(self, source: FileSource) -> Path:
        path = source.path.expanduser()
        return path if path.is_absolute() else self.base_dir / path


def _line_index(node: yaml.Node, path: tuple = (), lines: dict | None = None, duplicates: list | None = None):
    """Map every key/index path of a composed YAML document to its 1-based line number."""
    lines = {} if lines is None else lines
    duplicates = [] if duplicates is None else duplicates
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                duplicates.append((key_node.start_mark.line + 1, path + (key,)))
            seen.add(key)
            lines[path + (key,)] = key_node.start_mark.line + 1
            _line_index(value_node, path + (key,), lines, duplicates)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[path + (index,)] = item.start_mark.line + 1
            _line_index(item, path + (index,), lines, duplicates)
    return lines, duplicates


def _describe(loc: tuple, data: Any) -> str:
    """A readable location such as ``videos[2] (id 'venice').sources[0]``."""
    text = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(node, dict) and "id" in node and text.count("[") == 1:
                text += f" (id {node['id']!r})"
        else:
            if not isinstance(node, dict) or part not in node:
                # pydantic adds union tags and validator names to locations; they are not keys.
                continue
            text += f".{part}" if text else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return text or "manifest"


def _line_for(loc: tuple, lines: dict) -> int | None:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def _duplicate_ids(data: dict, lines: dict) -> list[str]:
    first_line: dict[str, int] = {}
    problems = []
    videos = data.get("videos")
    for index, video in enumerate(videos if isinstance(videos, list) else []):
        if not isinstance(video, dict) or not isinstance(video.get("id"), str):
            continue
        key = video["id"].lower()  # ids become file names; case-only differences collide on some disks
        line = lines.get(("videos", index, "id"), 0)
        if key in first_line:
            problems.append(
                f"line {line}, {_describe(('videos', index, 'id'), data)}: "
                f"duplicate id {video['id']!r} (first at line {first_line[key]})"
            )
        else:
            first_line[key] = line
    return problems


def _check_plain_yaml(text: str, name: str) -> None:
    """Refuse, in one linear pass over the parser's events, what only an attack or an accident needs:
    anchors and aliases (a few hundred bytes of nested aliases expand to gigabytes) and deep nesting."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise WtoursError(f"{name}: line {line}: YAML anchors and aliases (&name, *name) are not allowed in a "
                              "manifest; write each value out")  # fmt: skip
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_NESTING:
                raise WtoursError(f"{name}: line {line}: nested more than {MAX_NESTING} levels deep")
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def parse_manifest(text: str, *, name: str = "manifest", base_dir: Path | None = None) -> Manifest:
    """Parse and validate manifest YAML; every problem goes into one WtoursError message."""
    if len(text) > MAX_MANIFEST_BYTES:
        raise WtoursError(f"{name}: larger than a manifest may be ({MAX_MANIFEST_BYTES >> 20} MiB)")
    try:
        _check_plain_yaml(text, name)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise WtoursError(f"{name}: {where}malformed YAML: {problem}") from None
    if node is None or not isinstance(data, dict):
        raise WtoursError(f"{name}: expected a mapping with a 'videos' list, got {type(data).__name__}")
    lines, duplicates = _line_index(node)
    problems = [f"line {line}, {_describe(loc, data)}: key given twice" for line, loc in duplicates]
    problems += _duplicate_ids(data, lines)
    try:
        manifest = Manifest.model_validate({**data, "base_dir": base_dir or Path(".")})
    except ValidationError as err:
        for error in err.errors():
            loc = tuple(error["loc"])
            if not loc and "duplicate id" in error["msg"]:
                continue  # already reported above, with lines
            line = _line_for(loc, lines)
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = f"unknown key {loc[-1]!r}"
            elif error["type"] == "missing":
                message = f"missing required key {loc[-1]!r}"
                loc = loc[:-1]
            prefix = f"line {line}, " if line else ""
            problems.append(f"{prefix}{_describe(loc, data)}: {message}")
        manifest = None
    if problems:
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        raise WtoursError(f"{name}: invalid manifest ({count}): " + "; ".join(problems))
    assert manifest is not None
    return manifest


def load_manifest(path: str | Path | None = None) -> Manifest:
    """Load and validate a manifest file (the shipped Walking Tours manifest by default)."""
    path = Path(path) if path is not None else default_manifest_path()
    try:
        if path.is_file() and path.stat().st_size > MAX_MANIFEST_BYTES:
            raise WtoursError(f"{path}: larger than a manifest may be ({MAX_MANIFEST_BYTES >> 20} MiB)")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WtoursError(f"manifest not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise WtoursError(f"cannot read manifest {path}: {err}") from None
    return parse_manifest(text, name=str(path), base_dir=path.resolve().parent)
