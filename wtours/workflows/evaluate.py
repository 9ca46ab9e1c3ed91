"""``wtours eval knn | linear | attention | davis | reconstruct | tracks``: a pretrained encoder measured.

Each evaluation of a run folder writes into the run's ``eval/`` folder by default (``wtours.store.RunDir``),
where ``wtours compare`` reads it; k-NN and the linear probe default to the embedded study set
(``wtours.sample.study``: 64-px crops of 20 real photographs, class = photo).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from wtours.workflows.requests import (
    ARCH_HELP,
    DEVICE_HELP,
    ENCODER_HELP,
    EncoderPath,
    Request,
    argument,
    flag,
    split_ids,
)

PositiveInt = Annotated[int, Field(ge=1)]


class EncoderRequest(Request):
    """The encoder every evaluation measures, and where it runs."""

    encoder: EncoderPath = Field(..., description=ENCODER_HELP)
    device: str = Field("auto", description=DEVICE_HELP)


class LabelledSetRequest(EncoderRequest):
    """A labelled ImageFolder set, or the built-in study set, written once."""

    labelled: Annotated[Path | None, flag("--data", exists=True, file_okay=False)] = Field(
        None,
        description="Labelled set with train/<class>/* and val/<class>/* images (ImageFolder layout). Default: the "
        "built-in study set (64-px crops of 20 real photographs, class = photo; val crops from a band of each photo "
        "that no training crop and no frame of the study walk shows).",
    )
    num_workers: int = Field(2, ge=0, description="Image-decoding processes.")
    sample_dir: Path = Field(Path("data/labelled/study"), description="Where the built-in study set is written once.")

    def labelled_set(self) -> Path:
        """The labelled set given, or the study set (built into ``sample_dir`` the first time)."""
        if self.labelled is not None:
            return self.labelled
        from wtours.sample.study import make_study_labelled_set

        return make_study_labelled_set(self.sample_dir)


def _run_of(encoder: Path):
    from wtours.store import RunDir

    return RunDir.holding(encoder)


# --- k-NN --------------------------------------------------------------------------------------------------


class KnnRequest(LabelledSetRequest):
    k: list[PositiveInt] = Field(
        [10, 20], description="Neighbours that vote; repeat for several (DINO: 10, 20, 100, 200)."
    )
    temperature: float = Field(0.07, description="Vote weight exp(cos/T); 0.07 as in DINO.")
    image_size: int = Field(
        224, ge=16, description="Centre crop (after a resize to 256/224 of it): the training crop size."
    )
    batch_size: int = Field(64, ge=1, description="Images per forward pass.")
    out: Path | None = Field(
        None,
        description="Results JSON. Default: <run>/eval/knn.json (where `wtours compare` looks) when ENCODER is a run, "
        "else none.",
    )
    untrained: bool = Field(
        False,
        description="Evaluate the same network before training instead of its weights: the run's encoder at step 0 "
        "(encoder_init.safetensors), else the architecture at random initialisation: the floor a trained encoder "
        "should beat (a random ViT already sorts the study set's crops at about 55 %). Default output: "
        "<run>/eval/knn_untrained.json.",
    )


@dataclass
class KnnResult:
    report_data: dict[str, Any]
    out: Path | None
    exit_code: int = 0

    @property
    def top1(self) -> dict[str, float]:
        return self.report_data["top1"]

    def report(self) -> None:
        for neighbours, value in self.top1.items():
            print(f"k={neighbours}\ttop1={value:.2f}%")
        data = self.report_data
        print(f"majority class\ttop1={data['majority_class_top1']:.2f}%  ({data['n_val']} val images)")
        if self.out is not None:
            print(self.out)


def eval_knn(request: KnnRequest) -> KnnResult:
    """Weighted k-NN top-1 of the encoder's L2-normalised fp32 [CLS] features, as DINO's eval_knn.py."""
    from wtours.trainers.evaluation.knn import run_knn

    run = _run_of(request.encoder)
    out = request.out or (run.knn_path(untrained=request.untrained) if run else None)
    report = run_knn(
        request.encoder, request.labelled_set(), ks=tuple(request.k), temperature=request.temperature,
        image_size=request.image_size, batch_size=request.batch_size, device=request.device,
        num_workers=request.num_workers, out_json=out, untrained=request.untrained,
    )  # fmt: skip
    return KnnResult(report, out)


# --- linear probe ------------------------------------------------------------------------------------------


class LinearRequest(LabelledSetRequest):
    labelled: Annotated[Path | None, flag("--data", exists=True, file_okay=False)] = Field(
        None,
        description="Labelled set with train/<class>/* and val/<class>/* images (ImageFolder layout), e.g. ImageNet. "
        "Default: the built-in study set (64-px crops of 20 real photographs, class = photo).",
    )
    out: Annotated[Path | None, flag("--out", "-o")] = Field(
        None,
        description="Results JSON: top-1, top-5, per-epoch val top-1, provenance. Default: <run>/eval/linear.json "
        "(where `wtours compare` looks) when ENCODER is a run, else ./linear.json.",
    )
    arch: str | None = Field(
        None,
        description="timm architecture, e.g. vit_small_patch16_224. Default: the one named in the weights file "
        "(wtours exports name it); give it for weights saved elsewhere.",
    )
    protocol: Literal["dino", "cached"] = Field(
        "dino",
        description="dino: DINO's eval_linear.py (training images RandomResizedCrop + flip, drawn anew and encoded "
        "every epoch). cached: encode the training images once from their centre crops (no augmentation) and "
        "cache them: 100 epochs in seconds, typically a point or two below; the probe wtours ran before.",
    )
    epochs: int = Field(100, ge=1, description="Epochs; the cosine schedule spans them (DINO: 100).")
    lr: float = Field(
        0.001,
        ge=0.0,
        description="SGD learning rate at a batch of 256, scaled linearly with --batch-size (DINO: 0.001; the DoRA "
        "release's README ran 0.01 at 4 x 512 images). DINO advises tuning it per checkpoint.",
    )
    batch_size: int = Field(
        128,
        ge=1,
        description="Images per SGD step, all devices together (DINO: 128 per GPU; DoRA's README: 2048 = 4 x 512).",
    )
    weight_decay: float = Field(
        0.0, ge=0.0, description="L2 penalty; raise it (e.g. 1e-4) if the probe overfits a small set."
    )
    n_last_blocks: int = Field(
        4,
        ge=1,
        description="Concatenate the [CLS] of this many last blocks (DINO: 4 for ViT-S, 1 with --avgpool for ViT-B).",
    )
    avgpool: Annotated[bool, flag("--avgpool/--no-avgpool")] = Field(
        False, description="Also append the last block's mean patch token (DINO for ViT-B)."
    )
    resize: int = Field(256, ge=16, description="Val images: short side (bicubic) before the centre crop (DINO: 256).")
    crop: int = Field(
        224,
        ge=16,
        description="Size fed to the encoder: the val centre crop and the training random crop (DINO: 224).",
    )
    cache_dir: Path = Field(
        Path(".cache/features"),
        description="Feature cache keyed by weights hash + images + transform, for the val features (and the "
        "training features with --protocol cached): reruns skip the encoder there. Delete the folder to reclaim "
        "disk.",
    )
    no_cache: bool = Field(False, description="Recompute the features and store nothing.")
    feature_batch_size: int = Field(
        128, ge=1, description="Images per encoder forward pass; lower it on a small GPU."
    )
    seed: int = Field(0, description="Seed of the classifier's initialisation, the batch order and the training crops.")
    untrained: bool = Field(
        False,
        description="Probe the same network before training instead of its weights: the run's encoder at step 0 "
        "(encoder_init.safetensors), else the architecture at random initialisation: the floor a trained encoder "
        "should beat. Default output: <run>/eval/linear_untrained.json.",
    )


@dataclass
class LinearResult:
    report_data: dict[str, Any]
    out: Path
    exit_code: int = 0

    def report(self) -> None:
        data = self.report_data
        print(
            f"top-1 {100 * data['top1']:.2f}% (best epoch {100 * data['best_top1']:.2f}%)  "
            f"top-5 {100 * data['top5']:.2f}%  -> {self.out}"
        )


def eval_linear(request: LinearRequest) -> LinearResult:
    """A linear probe on frozen [CLS] features, DINO's eval_linear.py by default: top-1 (final and best epoch)."""
    from wtours.trainers.evaluation.linear import LinearProbeConfig, run_linear_probe

    run = _run_of(request.encoder)
    default = Path("linear_untrained.json" if request.untrained else "linear.json")
    out = request.out or (run.linear_path(untrained=request.untrained) if run else default)
    labelled = request.labelled_set()
    config = LinearProbeConfig(
        epochs=request.epochs, lr=request.lr, batch_size=request.batch_size, weight_decay=request.weight_decay,
        seed=request.seed, protocol=request.protocol,
    )  # fmt: skip
    report = run_linear_probe(
        request.encoder, labelled / "train", labelled / "val", out, arch=request.arch, config=config,
        n_last_blocks=request.n_last_blocks, avgpool_patches=request.avgpool, resize=request.resize,
        crop=request.crop, cache_dir=None if request.no_cache else request.cache_dir,
        feature_batch_size=request.feature_batch_size, num_workers=request.num_workers, device=request.device,
        untrained=request.untrained,
    )  # fmt: skip
    return LinearResult(report, out)


# --- attention maps ----------------------------------------------------------------------------------------


class AttentionRequest(EncoderRequest):
    images: Annotated[list[Path], argument(exists=True, dir_okay=False)] = Field(
        ..., description="Images to show, one grid row each."
    )
    out: Annotated[Path, flag("--out", "-o")] = Field(
        Path("attention.png"), description="Grid image; the same name with .pdf is written beside it."
    )
    arch: str | None = Field(None, description=ARCH_HELP)
    image_size: int = Field(
        480,
        ge=16,
        description="Images are resized (bilinear) to this square, then cropped at the top left to a multiple of the "
        "patch size, as DINO's visualize_attention.py (default 480 x 480). Lower it for a smaller grid; raise it "
        "for finer maps at more memory.",
    )
    threshold: float | None = Field(
        None,
        ge=0.01,
        le=1.0,
        description="Instead of raw maps, show the image inside the fewest patches holding more than this share of "
        "each head's attention, by DINO's rule (its figures: 0.6).",
    )


@dataclass
class FilesResult:
    """Files an evaluation wrote, one per line."""

    written: list[Path]
    exit_code: int = 0

    def report(self) -> None:
        for path in self.written:
            print(path)


def eval_attention(request: AttentionRequest) -> FilesResult:
    """Per-head [CLS] attention of the last block, one column per head (PNG and PDF)."""
    from wtours.trainers.evaluation.attention_maps import write_attention_grid

    return FilesResult(write_attention_grid(
        request.encoder, request.images, request.out, arch=request.arch, image_size=request.image_size,
        mass=request.threshold, device=request.device,
    ))  # fmt: skip


# --- DAVIS -------------------------------------------------------------------------------------------------


class DavisRequest(EncoderRequest):
    davis_root: Annotated[Path, argument(exists=True, file_okay=False)] = Field(
        ...,
        description="DAVIS-2017 folder: JPEGImages/480p/<seq>/*.jpg, Annotations/480p/<seq>/*.png (palette masks), "
        "ImageSets/2017/<split>.txt.",
    )
    out_dir: Annotated[Path | None, flag("--out", "-o")] = Field(
        None,
        description="Folder for the predicted palette PNGs (<seq>/<frame>.png, readable by the DAVIS toolkit), "
        "per_object.csv and summary.json. Default: <run>/eval/davis (where `wtours compare` looks) when ENCODER is "
        "a run, else ./davis.",
    )
    arch: str | None = Field(None, description=ARCH_HELP)
    split: str = Field("val", description="Sequence list ImageSets/2017/<split>.txt; 'train' to tune settings.")
    sequences: Annotated[list[str] | None, flag("--sequence")] = Field(
        None, description="Only these sequences (repeat or separate by commas), for a quick check."
    )
    resolution: str = Field("480p", description="Frame folder under JPEGImages/ and Annotations/.")
    n_last_frames: int = Field(
        7, ge=0, description="Previous predicted frames used as sources besides the first (DINO: 7)."
    )
    temperature: float = Field(
        0.1, ge=1e-4, description="Softmax temperature of the affinities (DINO: 0.1); lower = sharper."
    )
    neighbourhood: int = Field(
        12,
        ge=0,
        description="Sources lie at most this many patches away in row and column (DINO: 12); 0 = anywhere. "
        "Scale it with the patch grid when you change --short-side or the patch size.",
    )
    topk: int = Field(5, ge=1, description="Source patches each target patch averages (DINO: 5).")
    short_side: int = Field(
        480,
        ge=16,
        description="Frames are read as DINO reads them (OpenCV, bilinear): this short side, the long side rounded "
        "down to a multiple of 64 (DINO: 480, so 854 x 480 -> 832 x 480); lower it to save memory.",
    )
    void: str = Field(
        "background",
        description="Annotation pixels labelled 255: background counts them as background, as the DAVIS-2017 "
        "toolkit's semi-supervised evaluation does (comparable with published J&F); ignore leaves them out of "
        "prediction and truth (the toolkit's unsupervised rule; wtours' rule before; reads higher).",
    )
    bound_th: float = Field(
        0.008,
        ge=0.0,
        description="Boundary tolerance of F: a fraction of the image diagonal, or pixels if >= 1 (DAVIS: 0.008).",
    )

    @field_validator("sequences", mode="before")
    @classmethod
    def _split(cls, values: Any) -> Any:
        return split_ids(values) if isinstance(values, (list, tuple)) else values


@dataclass
class DavisResult:
    summary: dict[str, Any]
    out_dir: Path
    exit_code: int = 0

    def report(self) -> None:
        summary = self.summary
        print(
            f"J&F {summary['JF_mean']:.3f}  J {summary['J_mean']:.3f}  F {summary['F_mean']:.3f}  "
            f"({summary['objects']} objects in {summary['sequences']} sequences) -> {self.out_dir}"
        )


def eval_davis(request: DavisRequest) -> DavisResult:
    """DAVIS-2017 video object segmentation by label propagation of frozen patch features; J, F and J&F."""
    from wtours.trainers.evaluation.davis import PropagationConfig, run_davis_for_encoder

    run = _run_of(request.encoder)
    out_dir = request.out_dir or (run.davis_dir if run else Path("davis"))
    config = PropagationConfig(
        n_last_frames=request.n_last_frames, temperature=request.temperature, neighbourhood=request.neighbourhood,
        topk=request.topk, short_side=request.short_side, void=request.void,
    )  # fmt: skip
    summary = run_davis_for_encoder(
        request.encoder, request.davis_root, out_dir, arch=request.arch, device=request.device, config=config,
        split=request.split, resolution=request.resolution, sequences=request.sequences, bound_th=request.bound_th,
    )  # fmt: skip
    return DavisResult(summary, out_dir)


# --- VideoMAE's reconstructions ----------------------------------------------------------------------------


class ReconstructRequest(Request):
    run: Annotated[Path, argument(exists=True, file_okay=False)] = Field(
        ..., description="A VideoMAE run folder (runs/<name>)."
    )
    video: Annotated[Path, flag("--video", exists=True, dir_okay=False)] = Field(
        ...,
        description="The video to cut the clip from (e.g. data/videos/<id>.mp4); the run's frames per clip and "
        "stride apply.",
    )
    start_frame: int = Field(0, ge=0, description="First frame of the clip; try several to see other scenes.")
    seed: int = Field(0, description="Seed of the tube mask; change it to see other hidden regions.")
    out: Annotated[Path, flag("--out", "-o")] = Field(
        Path("reconstruction.png"), description="Where the PNG grid (original / masked / reconstructed) goes."
    )


@dataclass
class ReconstructResult:
    out: Path
    loss: float
    mask_ratio: float
    exit_code: int = 0

    def report(self) -> None:
        print(f"{self.out}\tmasked-token loss {self.loss:.4f}\tmask ratio {self.mask_ratio:.2f}")


def eval_reconstruct(request: ReconstructRequest) -> ReconstructResult:
    """Original, masked and reconstructed frames of one clip as an image grid (VideoMAE runs)."""
    from wtours.trainers.evaluation.reconstruct import write_reconstruction

    figures = write_reconstruction(request.run, request.video, request.out, start_frame=request.start_frame,
                                   seed=request.seed)  # fmt: skip
    return ReconstructResult(request.out, figures["loss"], figures["mask_ratio"])


# --- DoRA's tracks -----------------------------------------------------------------------------------------


class TracksRequest(Request):
    weights: Annotated[Path, argument(exists=True)] = Field(
        ...,
        description="A DoRA or DINO run folder (runs/<name>: its checkpoint's teacher, at any step), a "
        "checkpoint.pt, or an exported encoder.safetensors (+ .json beside it).",
    )
    video: Annotated[Path, argument(exists=True, dir_okay=False)] = Field(
        ..., description="Video to take the clip from."
    )
    out: Path = Field(
        Path("tracks"), description="Folder for <name>.png (frames x objects strip) and <name>.gif (overlay)."
    )
    start: float = Field(0.0, ge=0.0, description="Time of the clip's first frame, in seconds.")
    frames: int = Field(8, ge=1, description="Frames in the clip (DoRA trains on 8).")
    stride: int = Field(
        60, ge=1, description="Frames between clip frames (DoRA: 60 = 1 s at 60 fps); halve it at 30 fps."
    )
    height: int = Field(
        224, ge=16, description="Frame height the encoder sees (width keeps the aspect); the training size."
    )
    objects: int = Field(3, ge=1, description="Objects to discover (at most the heads of the last block).")
    heads: Annotated[list[int] | None, flag("--head")] = Field(
        None, description="Seed objects from these heads of the last block (repeat); default: drawn with --seed."
    )
    seed: int = Field(0, description="Draws the heads when --head is not given; change it to see others.")
    device: str = Field("auto", description=DEVICE_HELP)
    name: str = Field("tracks", description="File name stem of the two pictures.")


@dataclass
class TracksResult:
    strip: Path
    gif: Path
    heads: list[int] = field(default_factory=list)
    exit_code: int = 0

    def report(self) -> None:
        print(f"heads {self.heads}")
        print(self.strip)
        print(self.gif)


def eval_tracks(request: TracksRequest) -> TracksResult:
    """Draw the k objects DoRA's teacher discovers on a clip's first frame and tracks over its T frames."""
    from wtours.frames import stream_info
    from wtours.trainers.evaluation.tracks import eval_tracks as draw_tracks

    start_frame = round(request.start * stream_info(request.video).fps)
    strip, gif, tracks = draw_tracks(
        request.weights, request.video, request.out, start_frame=start_frame, frames_per_clip=request.frames,
        stride=request.stride, height=request.height, n_objects=request.objects, heads=request.heads or None,
        seed=request.seed, device=request.device, name=request.name,
    )  # fmt: skip
    return TracksResult(strip, gif, list(tracks.heads))
