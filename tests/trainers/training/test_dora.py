"""DoRA: discovery, tracking and masks on constructed features, the loss in both modes against the
release's loop, clip views, and the tiny preset training (and resuming) on the embedded sample."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wtours.errors import WtoursError
from wtours.store import RunDir
from wtours.trainers.training.checkpoint import load_checkpoint
from wtours.trainers.training.config import TrainConfig, load_config
from wtours.trainers.training.data import FramesDataset
from wtours.trainers.training.dora import (
    Options,
    clip_views,
    discover_and_track,
    dora_loss,
    object_masks,
    object_prototypes,
    refine_prototypes,
    track_objects,
)
from wtours.trainers.training.engine import pretrain


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- tracking and masks -------------------------------------------------------------------------------


def test_tracked_mask_follows_an_object_across_the_patch_grid() -> None:
    rows, cols, dim, n_frames = 6, 6, 16, 5
    generator = _generator(1)
    object_key = F.normalize(torch.randn(dim, generator=generator), dim=0) * 6
    keys = torch.randn(1, n_frames, rows, cols, dim, generator=generator) * 0.3
    for t in range(n_frames):  # a 2x2-patch object moving one patch to the right per frame
        keys[0, t, 1:3, t : t + 2] += object_key
    prototype = object_key.view(1, 1, dim)
    tracks = track_objects(prototype, keys.flatten(2, 3))
    masks = object_masks(tracks, (rows, cols), size=cols * 4)  # a 4 px "patch"
    assert masks.shape == (1, 1, n_frames, cols * 4, cols * 4)
    grid_masks = (F.normalize(tracks, dim=-1) > F.normalize(tracks, dim=-1).mean(-1, keepdim=True)).view(
        n_frames, rows, cols
    )
    for t in range(n_frames):
        expected = torch.zeros(rows, cols, dtype=torch.bool)
        expected[1:3, t : t + 2] = True
        assert torch.equal(grid_masks[t], expected), t
    # Upsampled masks keep the same object, now at view resolution (nearest: whole patches).
    upsampled = masks[0, 0].view(n_frames, rows, 4, cols, 4)
    assert torch.equal(upsampled.amin(dim=(2, 4)).bool(), grid_masks)
    assert torch.equal(upsampled.amax(dim=(2, 4)).bool(), grid_masks)


def _three_region_scene(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Patch embeddings [1, 36, 16] of a 6x6 grid whose left, middle and right thirds are three different
    things, and three near-identical raw prototypes (heads that all attend to the scene as a whole)."""
    generator = _generator(seed)
    directions = torch.linalg.qr(torch.randn(16, 3, generator=generator))[0].T  # 3 orthonormal directions
    region_of_column = torch.tensor([0, 0, 1, 1, 2, 2])
    embeddings = directions[region_of_column].unsqueeze(0).expand(6, 6, 16).clone()
    embeddings += 0.05 * torch.randn(6, 6, 16, generator=generator)
    embeddings = embeddings.reshape(1, 36, 16)
    prototypes = embeddings.mean(dim=1, keepdim=True) + 0.5 * torch.randn(1, 3, 16, generator=generator)
    return embeddings, prototypes


def _mean_pairwise_iou(masks: torch.Tensor) -> float:
    masks = masks.bool().flatten(-2)  # [k, P]
    ious = []
    for i in range(len(masks)):
        for j in range(i + 1, len(masks)):
            union = (masks[i] | masks[j]).sum()
            ious.append(float((masks[i] & masks[j]).sum() / union.clamp(min=1)))
    return sum(ious) / len(ious)


def test_masks_of_different_objects_barely_overlap_after_refinement() -> None:
    embeddings, raw = _three_region_scene(seed=1)
    refined, plan = refine_prototypes(raw, embeddings, iterations=30, epsilon=0.05)
    assert torch.allclose(plan.sum(dim=-1), torch.ones(1, 36), atol=1e-5)
    keys = embeddings.unsqueeze(1)  # one frame whose keys are the embeddings themselves
    refined_masks = object_masks(track_objects(refined, keys), (6, 6), size=6)[0, :, 0]
    raw_masks = object_masks(track_objects(raw, keys), (6, 6), size=6)[0, :, 0]
    assert _mean_pairwise_iou(refined_masks) < 0.05 < 0.25 < _mean_pairwise_iou(raw_masks)
    # Each refined object is exactly one of the three regions, and together they cover the scene.
    columns_covered = sorted(tuple(mask.any(dim=0).nonzero().flatten().tolist()) for mask in refined_masks.bool())
    assert columns_covered == [(0, 1), (2, 3), (4, 5)]


def test_prototypes_pool_queries_with_the_chosen_heads() -> None:
    cls_attention = torch.softmax(torch.randn(2, 4, 5, generator=_generator(2)), dim=-1)
    queries = torch.randn(2, 5, 6, generator=_generator(3))
    heads = torch.tensor([3, 1])
    prototypes = object_prototypes(cls_attention, queries, heads)
    for b in range(2):
        for j, head in enumerate(heads):
            expected = sum(cls_attention[b, head, p] * queries[b, p] for p in range(5))
            assert torch.allclose(prototypes[b, j], expected, atol=1e-6)


def test_release_threshold_is_shared_by_the_batch() -> None:
    # Two clips, one object, one frame: the second clip's map is flat, the first peaked. Per clip, the flat
    # map keeps nothing; with the release's batch-wide mean, it keeps everything (it is above the mean).
    peaked = torch.tensor([0.97, 0.01, 0.01, 0.01])
    flat = torch.full((4,), 0.25)
    tracks = torch.stack([peaked, flat]).view(2, 1, 1, 4)
    per_clip = object_masks(tracks, (2, 2), size=2)
    shared = object_masks(tracks, (2, 2), size=2, threshold_per_clip=False)
    assert per_clip[0].sum() == 1 and per_clip[1].sum() == 0
    assert shared[1].sum() == 4


# --- loss ----------------------------------------------------------------------------------------------


def _release_loss(teacher, masked, local, center, student_temp, teacher_temp, faithful):
    """The released DINOLoss.forward's loops, with the accumulator reset added in fixed mode."""
    n_objects, n_frames, batch = masked.shape[:3]
    n_local = local.shape[1]
    frame_loss, total = 0.0, 0.0
    for j in range(n_objects):
        if not faithful:
            frame_loss = 0.0
        for t in range(n_frames):
            target = F.softmax((teacher[t] - center) / teacher_temp, dim=-1)
            mask_term = float(torch.sum(-target * F.log_softmax(masked[j, t] / student_temp, dim=-1), dim=-1).mean())
            crops = range(1, n_local) if faithful else range(n_local)
            local_terms = [
                float(torch.sum(-target * F.log_softmax(local[t, c] / student_temp, dim=-1), dim=-1).mean())
                for c in crops
            ]
            frame_loss += 0.5 * (mask_term + sum(local_terms) / len(local_terms))
        frame_loss /= n_frames
        total += frame_loss
    return total / n_objects


@pytest.mark.parametrize("faithful", [False, True])
def test_loss_equals_the_release_loop(faithful: bool) -> None:
    generator = _generator(4)
    n_objects, n_frames, batch, n_local, out_dim = 3, 4, 2, 3, 7
    teacher = torch.randn(n_frames, batch, out_dim, generator=generator, dtype=torch.float64)
    masked = torch.randn(n_objects, n_frames, batch, out_dim, generator=generator, dtype=torch.float64)
    local = torch.randn(n_frames, n_local, batch, out_dim, generator=generator, dtype=torch.float64)
    center = torch.randn(1, out_dim, generator=generator, dtype=torch.float64)
    loss = dora_loss(teacher, masked, local, center.float(), student_temp=0.1, teacher_temp=0.04, faithful=faithful)
    expected = _release_loss(teacher, masked, local, center, 0.1, 0.04, faithful)
    assert math.isclose(float(loss), expected, rel_tol=1e-5)


def test_faithful_loss_weights_objects_as_documented() -> None:
    # Masked term only differs between objects: object j's mean term m_j is known, locals are identical.
    n_objects, n_frames, out_dim = 3, 2, 4
    teacher = torch.zeros(n_frames, 1, out_dim)
    local = torch.zeros(n_frames, 2, 1, out_dim)
    masked = torch.zeros(n_objects, n_frames, 1, out_dim)
    masked[1, :, :, 0] = 1.0
    masked[2, :, :, 0] = -2.0
    common = dict(student_temp=1.0, teacher_temp=1.0)
    per_object = [
        float(dora_loss(teacher, masked[j : j + 1], local, torch.zeros(1, out_dim), **common)) for j in range(3)
    ]
    weights = [sum(n_frames ** (-n) for n in range(n_objects - j)) for j in range(n_objects)]
    expected = sum(m * w for m, w in zip(per_object, weights, strict=True)) / n_objects
    faithful = float(dora_loss(teacher, masked, local, torch.zeros(1, out_dim), faithful=True, **common))
    assert math.isclose(faithful, expected, rel_tol=1e-6)
    fixed = float(dora_loss(teacher, masked, local, torch.zeros(1, out_dim), **common))
    assert math.isclose(fixed, sum(per_object) / n_objects, rel_tol=1e-6)


def test_faithful_ignores_only_the_first_local_crop() -> None:
    teacher = torch.zeros(1, 1, 3)
    masked = torch.zeros(1, 1, 1, 3)
    local = torch.zeros(1, 4, 1, 3)
    local[0, 0, 0, 0] = 50.0  # a wildly wrong first crop
    common = dict(student_temp=1.0, teacher_temp=1.0, faithful=True)
    assert math.isclose(
        float(dora_loss(teacher, masked, local, torch.zeros(1, 3), **common)), math.log(3), rel_tol=1e-6
    )
    assert float(dora_loss(teacher, masked, local, torch.zeros(1, 3), student_temp=1.0, teacher_temp=1.0)) > 5


# --- views and discovery on a real ViT ----------------------------------------------------------------


def test_global_view_shares_crop_and_flip_across_frames_and_locals_are_per_frame() -> None:
    n_clips, n_frames = 6, 3
    ramp = torch.linspace(0, 255, 96).round().to(torch.uint8)  # grey, brighter to the right
    frames = ramp.view(1, 1, 1, 1, 96).expand(n_clips, n_frames, 3, 64, 96).contiguous()
    options = Options(clip_crop_size=48, global_crops_size=32, local_crops_number=2, local_crops_size=16)
    global_clips, local_crops = clip_views(frames, options, _generator(5))
    assert global_clips.shape == (n_clips, n_frames, 3, 32, 32)
    assert [tuple(crop.shape) for crop in local_crops] == [(n_clips * n_frames, 3, 16, 16)] * 2
    profiles = global_clips.mean(dim=(2, 3))  # [clips, frames, columns]
    direction = torch.sign(profiles[..., -1] - profiles[..., 0])  # +1 unflipped, -1 flipped
    assert torch.all(direction == direction[:, :1])  # one flip per clip
    assert direction.min() < 0 < direction.max()  # and both kinds occur
    # Same crop on every frame of a clip: a black-and-white pattern stays on the same side of each frame's mean
    # through jitter and grayscale (monotone on grey), so the thresholded views agree but where blur softens edges.
    rows, cols = torch.arange(64).view(-1, 1), torch.arange(96).view(1, -1)
    pattern = (((rows // 7) + (cols // 11)) % 2 * 255).to(torch.uint8)  # a checkerboard of 7 x 11 cells
    frames = pattern.view(1, 1, 1, 64, 96).expand(n_clips, n_frames, 3, 64, 96).contiguous()
    global_clips, _ = clip_views(frames, options, _generator(6))
    grey = global_clips.mean(dim=2)
    binary = grey > grey.mean(dim=(-2, -1), keepdim=True)
    agreement = (binary == binary[:, :1]).float().mean(dim=(-2, -1))
    assert torch.all(agreement > 0.9)
    assert binary.float().mean() > 0.2  # the pattern is in the views, not a flat image


def test_discovery_on_a_vit_and_teacher_head_matches_its_forward() -> None:
    import timm

    vit = timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        num_classes=0,
        dynamic_img_size=True,
        embed_dim=48,
        depth=2,
        num_heads=3,
    ).eval()
    clips = torch.randn(2, 3, 3, 48, 64, generator=_generator(6))
    objects, tokens = discover_and_track(vit, clips, torch.tensor([2, 0]), iterations=30, epsilon=0.05)
    assert objects.tracks.shape == (2, 2, 3, 12) and objects.patch_grid == (3, 4)
    assert torch.allclose(objects.tracks.sum(-1), torch.ones(2, 2, 3), atol=1e-5)
    with torch.no_grad():
        assert torch.allclose(vit.forward_head(tokens), vit(clips.flatten(0, 1)), atol=1e-5)
    with pytest.raises(WtoursError, match="heads"):
        discover_and_track(vit, clips, torch.arange(4), iterations=1, epsilon=0.05)


# --- training on the embedded sample -------------------------------------------------------------------


def _sample_clips(sample_frames, n_frames: int = 3) -> FramesDataset:
    """Clips of ``n_frames`` consecutive sampled frames (0.3 s apart) of the sample walking tour."""
    frames = sample_frames.frames[:, 0]
    starts = range(0, len(frames) - n_frames + 1, 2)
    return FramesDataset(torch.stack([frames[s : s + n_frames] for s in starts]))


def _tiny_dora(output_dir: Path, **overrides) -> TrainConfig:
    settings = {
        "run.output_dir": str(output_dir),
        "run.checkpoint_every": 1000,
        "dora.out_dim": 64,
        "dora.hidden_dim": 64,
        "dora.bottleneck_dim": 16,
        "dora.clip_crop_size": 64,
        "dora.global_crops_size": 48,
        "optim.epochs": 1,
        "optim.steps_per_epoch": 6,
        "optim.batch_size": 4,
        **overrides,
    }
    return load_config("dora_tiny_cpu", settings)


def test_paper_preset_is_the_released_recipe() -> None:
    config = load_config("dora_vits16")
    options = config.options
    assert config.method == "dora" and config.backbone.arch == "vit_small" and config.backbone.patch_size == 16
    assert (config.data.frames_per_clip, config.data.stride, config.data.mode) == (8, 60, "any_start")
    assert (options.n_objects, options.local_crops_number, options.local_crops_size) == (3, 6, 112)
    assert (options.clip_crop_size, options.global_crops_size) == (300, 224)
    assert (options.sinkhorn_iterations, options.sinkhorn_epsilon, options.faithful) == (30, 0.05, False)
    assert (options.out_dim, options.norm_last_layer, config.optim.min_lr) == (65536, False, 1e-5)


def test_config_errors_are_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(WtoursError, match=r"dora\.n_objets"):
        _tiny_dora(tmp_path, **{"dora.n_objets": 2})
    with pytest.raises(WtoursError, match="local_crops_number >= 2"):
        _tiny_dora(tmp_path, **{"dora.faithful": True, "dora.local_crops_number": 1})


def test_more_objects_than_heads_is_refused(tmp_path: Path, sample_frames) -> None:
    with pytest.raises(WtoursError, match="n_objects=4"):
        pretrain(_tiny_dora(tmp_path, **{"dora.n_objects": 4}), _sample_clips(sample_frames), show_progress=False)


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(RunDir(run_dir).checkpoint_path)["method"]


@pytest.mark.slow
def test_tiny_preset_trains_and_resumes_bit_exactly(tmp_path: Path, sample_frames, sample_video: Path) -> None:
    from wtours.trainers.evaluation.tracks import eval_tracks, load_teacher_encoder

    clips = _sample_clips(sample_frames)
    straight = pretrain(_tiny_dora(tmp_path, **{"run.name": "straight"}), clips, show_progress=False)
    config = _tiny_dora(tmp_path, **{"run.name": "resumed"})
    first = pretrain(config, clips, stop_after_steps=2, show_progress=False)
    assert first.steps_done == 2 and first.encoder_path is None
    second = pretrain(config, clips, resume=True, show_progress=False)
    assert second.steps_done == straight.steps_done == 6 and second.encoder_path is not None
    expected, resumed = _weights(straight.run_dir), _weights(second.run_dir)
    assert expected.keys() == resumed.keys() and torch.any(expected["center"] != 0)
    for name in expected:
        assert torch.equal(expected[name], resumed[name]), name
    records = [json.loads(line) for line in (second.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [record["step"] for record in records] == [1, 2, 3, 4, 5, 6]
    assert all(math.isfinite(record["loss"]) and 0 < record["mask_area"] < 1 for record in records)
    # The run's checkpoint is enough to look at what its teacher tracks.
    teacher = load_teacher_encoder(RunDir(second.run_dir).checkpoint_path)
    assert all(
        torch.equal(tensor, resumed[f"teacher.backbone.{name}"]) for name, tensor in teacher.state_dict().items()
    )
    _, _, tracks = eval_tracks(
        second.run_dir, sample_video, tmp_path / "tracks", frames_per_clip=3, stride=10, height=48
    )
    assert tracks.masks.shape[:2] == (3, 3)  # three of the three heads, over three frames


@pytest.mark.slow
def test_student_learns_the_teachers_targets_on_the_sample(tmp_path: Path, sample_frames) -> None:
    # DINO-style losses first rise while the centre catches up with the teacher's mean output, whatever
    # the learning does. With the centre following each batch at once and the teacher held fixed, what is
    # left is the student learning to match the teacher's targets through masked clips and local crops.
    overrides = {
        "optim.epochs": 3,
        "optim.lr": 0.2,
        "optim.momentum_teacher": 1.0,
        "optim.weight_decay": 0.0,
        "optim.weight_decay_end": 0.0,
        "dora.center_momentum": 0.0,
    }
    result = pretrain(_tiny_dora(tmp_path, **overrides), _sample_clips(sample_frames), show_progress=False)
    losses = [json.loads(line)["loss"] for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 18 and all(math.isfinite(loss) for loss in losses)
    # Step 1 runs with the initial zero centre; from step 2 on the targets are centred.
    assert sum(losses[-5:]) / 5 < 0.85 * sum(losses[1:6]) / 5, losses


# --- wtours eval tracks --------------------------------------------------------------------------------


def test_tracks_pictures_from_an_exported_encoder(tmp_path: Path, sample_video: Path) -> None:
    from PIL import Image

    from wtours.trainers.evaluation.tracks import eval_tracks
    from wtours.trainers.training.backbones import BackboneSpec, export_encoder

    spec = BackboneSpec("vit_tiny_patch16_224", {"embed_dim": 48, "depth": 2, "num_heads": 3})
    torch.manual_seed(0)
    export_encoder(spec.create(), spec, tmp_path / "encoder.safetensors")
    strip, gif, tracks = eval_tracks(
        tmp_path / "encoder.safetensors", sample_video, tmp_path / "out", frames_per_clip=3, stride=10, height=48,
        n_objects=2, heads=[2, 0],
    )  # fmt: skip
    height, width = tracks.frames.shape[-2:]
    assert height == 48 and width % 16 == 0 and tracks.heads == [2, 0]
    assert tracks.masks.shape == (2, 3, height, width) and tracks.masks.any() and not tracks.masks.all()
    with Image.open(strip) as picture:
        assert picture.size == (3 * width, 3 * height)  # T columns; the frames plus one row per object
        top_left = torch.from_numpy(np.array(picture.convert("RGB")))[:height, :width]
    assert torch.equal(top_left.permute(2, 0, 1), tracks.frames[0])
    with Image.open(gif) as animation:
        assert animation.n_frames == 3 and animation.size == (width, height)
    with pytest.raises(WtoursError, match="heads"):
        eval_tracks(
            tmp_path / "encoder.safetensors", sample_video, tmp_path, frames_per_clip=3, stride=10, height=48, heads=[3]
        )
    with pytest.raises(WtoursError, match="runs past the end"):
        eval_tracks(tmp_path / "encoder.safetensors", sample_video, tmp_path / "out", start_frame=170, height=48)
