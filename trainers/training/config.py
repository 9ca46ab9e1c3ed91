"""Training configuration as data: pydantic models loaded from YAML presets, unknown keys rejected.

A run's config has one section per concern (``run``, ``backbone``, ``optim``, ``data``) plus one section
named after the method (``dino:`` ...), its typed options. Each method module declares its config as a
`TrainConfig` whose ``method`` is its name and whose section is its ``Options`` model (``dino.DinoConfig``);
`config_from_tree` validates a YAML tree against the union of them, discriminated by ``method``, so the
method's options are typed from the file to the method's ``build()``, and the file on disk (a preset, a run's
``config.yaml``) is exactly the model's shape. The presets live in ``trainers/presets/``;
``wtours pretrain --preset NAME --set optim.lr=1e-4`` overrides any key.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from wtours.errors import WtoursError

PRESETS_DIR = Path(__file__).resolve().parent.parent / "presets"


class Section(BaseModel):
    """Base of every config section: a misspelt key is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid")


class RunConfig(Section):
    name: str = "dino"
    output_dir: Path = Path("runs")
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    compile: bool = False
    checkpoint_every: int = Field(500, ge=1, description="steps between checkpoints")
    log_every: int = Field(10, ge=1, description="steps between metrics.jsonl lines")
    knn_every: int | None = Field(
        None,
        ge=1,
        description="steps between k-NN scores of the encoder while it trains (at step 0, every N steps and at the "
        "end, into metrics.jsonl; `wtours compare` draws the curve); changes nothing the run learns. None = off",
    )
    knn_data: Path | None = Field(
        None,
        description="labelled set (train/<class>/*, val/<class>/*) for run.knn_every; None = the built-in study set, "
        "written once to data/labelled/study (`wtours pretrain`; the CPU study passes its own)",
    )
    knn_image_size: int | None = Field(
        None, ge=16, description="centre crop for run.knn_every; None = 64 on the built-in study set, else 224"
    )


class BackboneConfig(Section):
    arch: Literal["vit_tiny", "vit_small", "vit_base"] = "vit_small"
    patch_size: Literal[8, 16] = 16
    drop_path_rate: float = Field(0.1, ge=0.0, lt=1.0)
    pos_embed_resize: Literal["dino", "timm"] = Field(
        "dino",
        description="how the 224-px position table is resized for other crop sizes: 'dino' = the official "
        "interpolate_pos_encoding (DINO, DoRA), 'timm' = timm's antialiased resample",
    )
    # Overrides for tiny test models (None keeps the architecture's own value).
    embed_dim: int | None = None
    depth: int | None = None
    num_heads: int | None = None


class OptimConfig(Section):
    epochs: int = Field(100, ge=1)
    steps_per_epoch: int | None = Field(
        None, ge=1, description="cap on steps per epoch; None = one pass over the sampler"
    )
    batch_size: int = Field(64, ge=1, description="samples per process per step")
    lr: float = Field(5e-4, gt=0, description="peak lr at a total batch of 256 (scaled linearly)")
    min_lr: float = Field(1e-6, ge=0)
    warmup_epochs: float = Field(10, ge=0)
    weight_decay: float = Field(0.04, ge=0)
    weight_decay_end: float = Field(0.4, ge=0)
    # The teacher momentum (start and end) and freeze_last_layer are main_dino.py's settings (its momentum always
    # ends at 1), kept in this section where DINO has them; the engine does not read them: a method with an EMA
    # teacher and a head's last layer (DINO, DoRA) schedules them itself, given them through `ScheduleShape`,
    # and other methods ignore them.
    momentum_teacher: float = Field(0.996, ge=0, le=1, description="teacher EMA momentum at step 0")
    momentum_teacher_end: float = Field(
        1.0, ge=0, le=1, description="teacher EMA momentum at the last step, reached by a cosine (DINO: 1)"
    )
    clip_grad: float = Field(3.0, ge=0, description="per-parameter gradient norm cap; 0 disables")
    freeze_last_layer: float = Field(
        1, ge=0, description="epochs during which the head's last layer is frozen"
    )
    betas: tuple[float, float] = (0.9, 0.999)


class DataConfig(Section):
    """Which curated clips to read (see wtours.pipelines.clipdata) and how many loader workers."""

    data_dir: Path = Path("data")
    video_ids: list[str] | None = None
    frames_per_clip: int = Field(1, ge=1)
    stride: int = Field(60, ge=1)
    proxy_short_side: int | None = None
    mode: Literal["index", "any_start"] = "index"
    filters: dict[str, float] | None = Field(None, description="e.g. {max_darkness: 0.8, min_motion: 0.01}")
    num_workers: int = Field(4, ge=0)


class MethodOptions(Section):
    """Base of a method's own section (``dino:``, ``dora:``, ``videomae:``): its ``Options`` model."""


class TrainConfig(Section):
    """The sections every run has. A method's config subclasses it with ``method: Literal[<name>]`` and its
    section ``<name>: Options`` (e.g. ``dino.DinoConfig``); `options` reads that section, whichever it is."""

    method: str = "dino"
    run: RunConfig = RunConfig()
    backbone: BackboneConfig = BackboneConfig()
    optim: OptimConfig = OptimConfig()
    data: DataConfig = DataConfig()

    @property
    def options(self) -> MethodOptions:
        """The method's own section, typed by its module's ``Options``."""
        return getattr(self, self.method)

    @property
    def run_dir(self) -> Path:
        return self.run.output_dir / self.run.name


# What `wtours pretrain --method M` trains without --preset: each method as the Walking Tours paper compares it.
DEFAULT_PRESETS = {"dino": "dino_vits16_wt", "dora": "dora_vits16", "videomae": "videomae_vits16"}


@lru_cache(maxsize=1)
def config_union() -> TypeAdapter:
    """The union of every registered method's config, discriminated by ``method``."""
    from wtours.trainers.training.methods import METHODS, method_module

    configs = tuple(method_module(name).Config for name in METHODS)
    return TypeAdapter(Annotated[Union[configs], Field(discriminator="method")])  # noqa: UP007 - a runtime tuple


def preset_path(name_or_path: str | Path) -> Path:
    """A shipped preset by name (``dino_vits16_wt``) or any YAML file by path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    shipped = PRESETS_DIR / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    available = ", ".join(sorted(p.stem for p in PRESETS_DIR.glob("*.yaml")))
    raise WtoursError(f"no preset or YAML file {str(name_or_path)!r} (shipped presets: {available})")


def _set_dotted(tree: dict[str, Any], dotted_key: str, value: Any) -> None:
    node = tree
    *parents, leaf = dotted_key.split(".")
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise WtoursError(f"--set {dotted_key}: {key!r} is not a section")
    node[leaf] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``optim.lr=1e-4`` -> ("optim.lr", 1e-4); the value is read as YAML so lists and numbers work."""
    import yaml

    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise WtoursError(f"--set expects key=value (e.g. optim.lr=1e-4), got {text!r}")
    return key.strip(), yaml.safe_load(raw)


def load_config(preset: str | Path, overrides: dict[str, Any] | None = None, *, method: str | None = None
                ) -> TrainConfig:  # fmt: skip
    """Read a preset or YAML file (once), apply dotted overrides, validate every section into the method's
    typed config. ``method``, when given, must be the one the file declares."""
    from wtours.store import read_yaml_sections

    path = preset_path(preset)
    tree = read_yaml_sections(path)
    declared = tree.get("method", "dino")
    if method is not None and method != declared:
        raise WtoursError(f"preset {str(preset)!r} is for method {declared!r}, not {method!r}")
    for key, value in (overrides or {}).items():
        _set_dotted(tree, key, value)
    return config_from_tree(tree, source=str(path))


def resolve_config(method: str | None, preset: str | None, overrides: dict[str, Any]) -> TrainConfig:
    """The preset (default: the method's recipe in the Walking Tours paper, `DEFAULT_PRESETS`) with overrides;
    ``method`` must agree with the preset's own ``method:`` when both are given."""
    from wtours.trainers.training.methods import check_method

    if method is not None:
        check_method(method)
    return load_config(preset or DEFAULT_PRESETS[method or "dino"], overrides, method=method)


def config_from_tree(tree: dict[str, Any], source: str = "config") -> TrainConfig:
    """Validate a nested dict (a YAML file's, or the one a checkpoint saved) into its method's typed config."""
    from wtours.trainers.training.methods import check_method

    tree = {"method": "dino", **tree}
    check_method(tree["method"])
    if tree.get(tree["method"], {}) is None:  # an empty section in YAML (``dino:``): the method's defaults
        del tree[tree["method"]]
    try:
        return config_union().validate_python(tree)
    except ValidationError as err:
        raise WtoursError(f"{source}: {_first_problem(err)}") from None


def _first_problem(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(part) for part in first["loc"][1:])  # the first is the union's tag: the method
    message = first["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def saved_tree_with_defaults(tree: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """A config tree a run saved, as this wtours reads it: every key an older wtours did not write at its
    default, the value that run trained with. WtoursError if it no longer validates (a key since removed)."""
    return config_to_tree(config_from_tree(tree, source))


def config_to_tree(config: TrainConfig) -> dict[str, Any]:
    """What a run writes to ``runs/<name>/config.yaml`` (and the checkpoint keeps): the model as it is, the
    shape of a preset."""
    return config.model_dump(mode="json")
