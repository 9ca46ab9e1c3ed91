"""VideoMAE: tube masks, targets, loss and networks on small tensors; the tiny preset on the embedded sample
through the shared engine (loss falls, resume is bit-exact); the exported image encoder; the reconstruction grid."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from wtours.errors import WtoursError
from wtours.trainers.training.config import TrainConfig, load_config
from wtours.trainers.training.methods import ScheduleShape, StepState
from wtours.trainers.training.videomae import (
    VideoMAE,
    build,
    image_encoder,
    masked_per_frame,
    masked_reconstruction_loss,
    reconstruction_targets,
    sinusoid_position_embedding,
    tube_mask,
    tubelets,
    untubelet,
    visible_indices,
)

T, SIDE, PATCH, TUBELET = 4, 32, 8, 2


def tiny_videomae_config(output_dir: Path, **overrides) -> TrainConfig:
    settings = {"run.output_dir": str(output_dir), "run.checkpoint_every": 1000, **overrides}
    return load_config("videomae_tiny_cpu", settings)


def tiny_method(**overrides) -> VideoMAE:
    config = tiny_videomae_config(Path("unused"), **overrides)
    torch.manual_seed(0)
    return build(config.backbone, config.options, ScheduleShape(1, 1))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread, and far faster than on two when other jobs share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sample_clips(sample_video: Path):
    """Clips of 4 consecutive decoded frames (every 2nd frame of the sample walk, 40 px high)."""
    from wtours.trainers.training.data import FramesDataset, decode_frames

    frames = decode_frames([sample_video], every=2, short_side=40).frames.squeeze(1)
    usable = len(frames) // T * T
    return FramesDataset(frames[:usable].view(-1, T, *frames.shape[1:]))


# --- masks ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ratio, patches, expected", [(0.9, 196, 176), (0.75, 16, 12), (0.9, 64, 57), (0.9, 16, 14)])
def test_masked_count_is_int_of_ratio_times_patches_as_the_paper(ratio: float, patches: int, expected: int) -> None:
    # TubeMaskingGenerator: int(mask_ratio * patches per frame), a floor (57 of 64 at 0.9, where rounding says 58).
    assert masked_per_frame(patches, ratio) == expected == int(ratio * patches)


def test_a_ratio_that_hides_nothing_is_an_error() -> None:
    with pytest.raises(WtoursError, match="at least one must be hidden"):
        masked_per_frame(4, 0.2)


def test_tube_mask_count_is_exact_per_sample_and_identical_across_time() -> None:
    generator = torch.Generator().manual_seed(0)
    batch, time_steps, per_frame = 64, 8, 196
    mask = tube_mask(batch, time_steps, per_frame, 0.9, generator).view(batch, time_steps, per_frame)
    assert torch.all(mask.sum(dim=2) == 176)
    assert torch.all(mask == mask[:, :1])
    assert len({tuple(row.nonzero().flatten().tolist()) for row in mask[:, 0]}) == batch  # one draw per clip
    visible = visible_indices(mask.view(batch, -1))
    assert visible.shape == (batch, time_steps * 20)
    assert torch.all(visible.diff(dim=1) > 0)


def test_views_mask_every_clip_exactly_and_repeat_for_the_same_generator_seed() -> None:
    method = tiny_method()
    frames = torch.randint(0, 256, (5, T, 3, 40, 71), dtype=torch.uint8)
    first = method.views({"frames": frames}, torch.Generator().manual_seed(7))
    again = method.views({"frames": frames}, torch.Generator().manual_seed(7))
    other = method.views({"frames": frames}, torch.Generator().manual_seed(8))
    per_frame = (SIDE // PATCH) ** 2
    mask = first.mask.view(5, T // TUBELET, per_frame)
    assert torch.all(mask.sum(dim=2) == 12) and torch.all(mask == mask[:, :1])
    assert first.clips.shape == (5, 3, T, SIDE, SIDE)
    assert torch.equal(first.clips, again.clips) and torch.equal(first.mask, again.mask)
    assert not torch.equal(first.mask, other.mask)


def test_views_crop_whole_clips_and_never_flip_in_the_paper_recipe() -> None:
    # Every frame of a clip identical -> every cropped frame identical (one box per clip).
    method = tiny_method()
    image = torch.randint(0, 256, (3, 1, 3, 40, 71), dtype=torch.uint8)
    views = method.views({"frames": image.expand(3, T, 3, 40, 71).contiguous()}, torch.Generator().manual_seed(0))
    assert torch.allclose(views.clips, views.clips[:, :, :1].expand_as(views.clips))
    assert method.options.flip_p == 0 and load_config("videomae_vits16").options.flip_p == 0


def allowed_multi_scale_crops(height: int, width: int, output: int = 224) -> tuple[set, dict]:
    """The paper's multi-scale crop, written from its definition (TSN / VideoMAE): sides int(short side * s) for
    s in (1, .875, .75, .66), a side within 3 px of the output snapped to it, (width, height) pairs at most one
    scale step apart, and 13 fixed positions on a grid of quarter steps of the free space."""
    sides = [int(min(height, width) * s) for s in (1, 0.875, 0.75, 0.66)]
    sides = [output if abs(side - output) < 3 else side for side in sides]
    pairs = {(sides[j], sides[i]) for i in range(4) for j in range(4) if abs(i - j) <= 1}
    fractions = [(0, 0), (4, 0), (0, 4), (4, 4), (2, 2), (0, 2), (4, 2), (2, 4), (2, 0), (1, 1), (3, 1), (1, 3), (3, 3)]
    offsets = {
        (w, h): {(fx * ((width - w) // 4), fy * ((height - h) // 4)) for fx, fy in fractions} for w, h in pairs
    }
    return pairs, offsets


def test_multi_scale_crop_draws_exactly_the_papers_boxes() -> None:
    from wtours.trainers.training.videomae import multi_scale_crop_boxes

    height, width = 320, 568  # a 16:9 proxy at wtours' default short side
    pairs, offsets = allowed_multi_scale_crops(height, width)
    boxes = multi_scale_crop_boxes(4000, height, width, (1, 0.875, 0.75, 0.66), 1, torch.Generator().manual_seed(0))
    seen_pairs, seen_offsets = set(), set()
    for top, left, h, w in boxes.tolist():
        assert (w, h) in pairs and (left, top) in offsets[(w, h)]
        seen_pairs.add((w, h))
        seen_offsets.add((w, h, left, top))
    assert seen_pairs == pairs  # 10 pairs, all drawn
    assert len(seen_offsets) == sum(len(spots) for spots in offsets.values())
    assert (224, 224) not in pairs  # int(320 * .66) = 211 and int(320 * .75) = 240: none within 3 px of 224
    assert (224, 224) in allowed_multi_scale_crops(256, 341)[0]  # int(256 * .875) = 224


def test_crops_are_resized_with_pils_antialiased_bilinear() -> None:
    import torchvision.transforms.v2.functional as TF
    from torchvision.transforms import InterpolationMode

    method = tiny_method()
    frames = torch.randint(0, 256, (2, T, 3, 40, 71), dtype=torch.uint8)
    generator = torch.Generator().manual_seed(3)
    views = method.views({"frames": frames}, generator)
    from wtours.trainers.training.videomae import multi_scale_crop_boxes

    boxes = multi_scale_crop_boxes(
        2, 40, 71, (1, 0.875, 0.75, 0.66), 1, torch.Generator().manual_seed(3), output_size=SIDE
    )
    for clip in range(2):
        top, left, h, w = boxes[clip].tolist()
        expected = TF.resized_crop(
            frames[clip].float() / 255, top, left, h, w, [SIDE, SIDE], InterpolationMode.BILINEAR, antialias=True
        )
        pixels = views.clips[clip].transpose(0, 1) * torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
        pixels = pixels + torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
        assert (pixels - expected).abs().max() < 1e-5


# --- targets and loss -------------------------------------------------------------------------------------


def test_targets_equal_a_direct_per_tubelet_computation() -> None:
    pixels = torch.rand(2, T, 3, 16, 24, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    targets = reconstruction_targets(pixels, TUBELET, PATCH)
    rows, columns = 16 // PATCH, 24 // PATCH
    assert targets.shape == (2, (T // TUBELET) * rows * columns, TUBELET * PATCH * PATCH * 3)
    for b in range(2):
        token = 0
        for t in range(T // TUBELET):
            for y in range(rows):
                for x in range(columns):
                    cube = pixels[b, t * TUBELET : (t + 1) * TUBELET, :, y * PATCH : (y + 1) * PATCH,
                                  x * PATCH : (x + 1) * PATCH]  # fmt: skip
                    values = cube.permute(0, 2, 3, 1).reshape(-1, 3)  # (frame, row, column) x channel
                    expected = (values - values.mean(dim=0)) / (values.std(dim=0) + 1e-6)
                    assert torch.allclose(targets[b, token].view(-1, 3), expected.float(), atol=1e-5)
                    token += 1


def test_tubelets_round_trip() -> None:
    pixels = torch.rand(2, T, 3, 16, 24)
    assert torch.equal(untubelet(tubelets(pixels, TUBELET, PATCH), tuple(pixels.shape), TUBELET, PATCH), pixels)


def test_visible_tokens_never_enter_the_loss() -> None:
    generator = torch.Generator().manual_seed(0)
    mask = tube_mask(3, 2, 16, 0.75, generator)
    prediction = torch.randn(3, 32, 10, generator=generator, requires_grad=True)
    target = torch.randn(3, 32, 10, generator=generator)
    loss = masked_reconstruction_loss(prediction, target, mask)
    (gradient,) = torch.autograd.grad(loss, prediction)

    visible = ~mask
    noisy_prediction = prediction.detach().clone()
    noisy_prediction[visible] = float("nan")
    noisy_prediction.requires_grad_(True)
    noisy_target = target.clone()
    noisy_target[visible] = 1e6
    noisy_loss = masked_reconstruction_loss(noisy_prediction, noisy_target, mask)
    (noisy_gradient,) = torch.autograd.grad(noisy_loss, noisy_prediction)
    assert torch.equal(loss, noisy_loss)
    assert torch.equal(gradient, noisy_gradient)
    assert torch.all(gradient[visible] == 0) and torch.all(gradient[mask].abs().sum(-1) > 0)
    direct = ((prediction - target) ** 2)[mask].mean()
    assert torch.allclose(loss, direct)


def test_hidden_tubelets_never_reach_the_encoder() -> None:
    method = tiny_method()
    frames = torch.randint(0, 256, (2, T, 3, 40, 71), dtype=torch.uint8)
    views = method.views({"frames": frames}, torch.Generator().manual_seed(0))
    with torch.no_grad():
        prediction = method.student(views.clips, views.visible_index)
        pixel_tubelets = tubelets(views.clips.transpose(1, 2), TUBELET, PATCH)
        pixel_tubelets[views.mask] = 100.0  # paint over every hidden tubelet
        painted = untubelet(pixel_tubelets, tuple(views.clips.transpose(1, 2).shape), TUBELET, PATCH)
        assert torch.equal(method.student(painted.transpose(1, 2), views.visible_index), prediction)


def test_training_step_is_the_masked_mse_of_the_student_prediction() -> None:
    method = tiny_method()
    frames = torch.randint(0, 256, (2, T, 3, 40, 71), dtype=torch.uint8)
    views = method.views({"frames": frames}, torch.Generator().manual_seed(0))
    loss, _ = method.training_step(views, StepState(0, 0, 1e-3, 0.05), method.student)
    expected = masked_reconstruction_loss(method.student(views.clips, views.visible_index), views.targets, views.mask)
    assert torch.allclose(loss, expected)
    loss.backward()
    assert all(param.grad is not None for param in method.student.parameters())


# --- networks ---------------------------------------------------------------------------------------------


def test_position_embedding_is_the_papers_sinusoid_of_the_flattened_index() -> None:
    import numpy as np

    # The paper's table, from its definition: angle p / 10000^(2 (j // 2) / d), sine on even j, cosine on odd.
    p, j = np.arange(24)[:, None], np.arange(48)[None, :]
    angles = p / np.power(10000, 2 * (j // 2) / 48)
    official = np.where(j % 2 == 0, np.sin(angles), np.cos(angles))
    embedding = sinusoid_position_embedding((2, 3, 4), 48)  # (t, h, w) = 24 tokens flattened in that order
    assert (embedding - torch.tensor(official, dtype=torch.float32)).abs().max() < 1e-6
    assert load_config("videomae_vits16").options.position_embedding == "1d"


def test_factorised_variant_is_spatial_at_every_time_step() -> None:
    embedding = sinusoid_position_embedding((2, 3, 4), 48, "3d")
    assert embedding.shape == (24, 48)
    assert torch.cdist(embedding, embedding).add(torch.eye(24)).min() > 0.1
    first, second = embedding.view(2, 12, 48)
    assert torch.equal(first[:, 16:], second[:, 16:])  # the spatial part does not depend on time
    assert torch.equal(sinusoid_position_embedding((1, 3, 4), 48, "3d"), first)


def test_initialisation_and_weight_decay_follow_the_paper() -> None:
    from wtours.trainers.training.engine import param_groups

    method = tiny_method()
    # The tubelet embedding and the encoder-to-decoder projection keep PyTorch's default init (kaiming uniform,
    # bound 1 / sqrt(fan_in)), not the xavier init of the transformer's linear layers.
    conv = method.student.encoder.patch_embed.proj.weight
    assert conv.abs().max() <= 1 / (3 * TUBELET * PATCH * PATCH) ** 0.5
    embed = method.student.decoder.embed.weight
    assert embed.abs().max() <= 1 / embed.shape[1] ** 0.5 and embed.abs().max() > 0.5 / embed.shape[1] ** 0.5
    mask_token = method.student.decoder.mask_token
    assert mask_token.abs().max() <= 0.02  # truncated at one standard deviation
    decayed, plain = param_groups(method.student, method.no_weight_decay())
    assert any(param is mask_token for param in plain["params"])
    assert not any(param is mask_token for param in decayed["params"])


def test_blocks_use_fused_attention() -> None:
    method = tiny_method()
    blocks = [*method.student.encoder.blocks, *method.student.decoder.blocks]
    assert blocks and all(block.attn.fused_attn for block in blocks)


def test_image_encoder_equals_the_video_encoder_on_a_repeated_frame(tmp_path: Path) -> None:
    from wtours.trainers.evaluation.features import load_encoder
    from wtours.trainers.training.backbones import export_encoder

    method = tiny_method().eval()
    images = torch.rand(3, 3, SIDE, SIDE)
    clips = images.unsqueeze(2).expand(-1, -1, TUBELET, -1, -1)  # [B, 3, one tubelet of frames, S, S]
    with torch.no_grad():
        tokens, _ = method.student.encoder(clips)
        vit = image_encoder(method.student.encoder, SIDE)
        assert torch.allclose(vit.forward_features(images), tokens, atol=1e-5)
        assert torch.allclose(vit(images), tokens.mean(dim=1), atol=1e-5)
        export_encoder(method.encoder(), method.encoder_spec(), tmp_path / "encoder.safetensors")
        loaded = load_encoder(None, tmp_path / "encoder.safetensors")
        assert torch.allclose(loaded(images), tokens.mean(dim=1), atol=1e-5)
        assert loaded(torch.rand(2, 3, 48, 40)).shape == (2, 48)  # other image sizes, as k-NN needs


def test_bad_shapes_are_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(WtoursError, match="frames_per_clip=3 is not a multiple"):
        tiny_method(**{"data.frames_per_clip": 3})
    with pytest.raises(WtoursError, match="crop_size=36 is not a multiple"):
        tiny_method(**{"videomae.crop_size": 36})
    with pytest.raises(WtoursError, match=r"videomae\.mask_ratio"):
        tiny_videomae_config(tmp_path, **{"videomae.mask_ratio": 1.0})


@pytest.mark.parametrize("preset", ["videomae_vits16", "videomae_vitb16"])
def test_shipped_presets_load(preset: str) -> None:
    config = load_config(preset)
    assert config.method == "videomae" and config.data.frames_per_clip == 16
    assert config.options.mask_ratio == 0.9 and config.options.decoder_depth == 4


# --- through the engine -----------------------------------------------------------------------------------


def _losses(run_dir: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_tiny_preset_loss_decreases_on_the_sample(tmp_path: Path, sample_clips) -> None:
    from wtours.trainers.training.engine import pretrain

    config = tiny_videomae_config(tmp_path, **{"optim.epochs": 8})
    result = pretrain(config, sample_clips, show_progress=False)
    losses = _losses(result.run_dir)
    assert len(losses) == 8 * (len(sample_clips) // 4)
    assert sum(losses[-5:]) / 5 < 0.95 * sum(losses[:5]) / 5, losses


def cone_clips(n: int, seed: int, side: int = 40) -> torch.Tensor:
    """uint8 [n, T, 3, side, side]: a still cone of brightness (distance from a centre drawn anywhere in the
    frame), in a colour drawn per clip. Each normalised tubelet is a gradient pointing away from the centre, so
    what a hidden one holds follows from the visible ones and its own position, and from nothing else."""
    generator = torch.Generator().manual_seed(seed)
    centre = torch.rand(n, 2, 1, 1, generator=generator) * side
    colour = torch.rand(n, 3, 1, 1, generator=generator) * 0.5 + 0.25
    y, x = torch.meshgrid(torch.arange(side).float(), torch.arange(side).float(), indexing="ij")
    distance = ((x - centre[:, 0]) ** 2 + (y - centre[:, 1]) ** 2).sqrt() / side  # [n, side, side]
    image = colour * (0.3 + 1.2 * distance.unsqueeze(1))  # [n, 3, side, side]
    return (image.clamp(0, 1) * 255).round().to(torch.uint8).unsqueeze(1).expand(-1, T, -1, -1, -1).contiguous()


def test_the_tiny_preset_learns_to_fill_hidden_tubelets_from_the_visible_ones(tmp_path: Path) -> None:
    """Known truth for the whole objective (tube masks, positions of visible and mask tokens, targets): on
    clips whose hidden content is predictable, the loss on fresh clips falls far below what all zeros (each
    hidden tubelet's own mean) scores, and each prediction belongs to its own position."""
    from wtours.store import RunDir
    from wtours.trainers.training.checkpoint import load_method
    from wtours.trainers.training.data import FramesDataset
    from wtours.trainers.training.engine import pretrain

    settings = {"optim.epochs": 6, "optim.batch_size": 16, "run.log_every": 16}
    run = pretrain(tiny_videomae_config(tmp_path, **settings), FramesDataset(cone_clips(1024, seed=0)),
                   show_progress=False)  # fmt: skip
    method, _ = load_method(RunDir(run.run_dir).checkpoint_path)
    views = method.views({"frames": cone_clips(256, seed=1)}, torch.Generator().manual_seed(2))
    with torch.no_grad():
        prediction = method.student(views.clips, views.visible_index)
    batch, width = len(prediction), prediction.shape[-1]
    own = prediction[views.mask].view(batch, -1, width)  # every clip hides as many tubelets
    target = views.targets[views.mask].view(batch, -1, width)
    loss = (own - target).pow(2).mean()
    zeros = target.pow(2).mean()
    assert _losses(run.run_dir)[0] > 0.9 * zeros  # it starts knowing nothing (measured 1.04 against 0.99)
    assert loss < 0.5 * zeros, (loss, zeros)  # measured 0.18 against 0.99 (384 steps, 6 s)
    # Moved to the next hidden position of the same clip, the same predictions score far worse (measured 0.71).
    assert (own.roll(1, dims=1) - target).pow(2).mean() > 1.5 * loss


def test_resume_is_bit_exact(tmp_path: Path, sample_clips) -> None:
    from wtours.store import RunDir
    from wtours.trainers.training.checkpoint import load_checkpoint
    from wtours.trainers.training.engine import pretrain

    settings = {"optim.epochs": 1, "optim.steps_per_epoch": 4}
    straight = pretrain(tiny_videomae_config(tmp_path, **{"run.name": "straight", **settings}), sample_clips,
                        show_progress=False)  # fmt: skip
    config = tiny_videomae_config(tmp_path, **{"run.name": "resumed", **settings})
    assert pretrain(config, sample_clips, stop_after_steps=2, show_progress=False).steps_done == 2
    resumed = pretrain(config, sample_clips, resume=True, show_progress=False)
    assert resumed.steps_done == straight.steps_done == 4
    expected = load_checkpoint(RunDir(straight.run_dir).checkpoint_path)
    actual = load_checkpoint(RunDir(resumed.run_dir).checkpoint_path)
    for name, tensor in expected["method"].items():
        assert torch.equal(tensor, actual["method"][name]), name
    assert _losses(straight.run_dir) == _losses(resumed.run_dir)


def test_reconstruction_grid_of_a_trained_run(tmp_path: Path, sample_clips, sample_video: Path) -> None:
    import numpy as np
    from PIL import Image

    from wtours.trainers.evaluation.reconstruct import write_reconstruction
    from wtours.trainers.training.engine import pretrain

    run = pretrain(tiny_videomae_config(tmp_path, **{"optim.epochs": 1, "optim.steps_per_epoch": 2}), sample_clips,
                   show_progress=False)  # fmt: skip
    out = tmp_path / "grid.png"
    figures = write_reconstruction(run.run_dir, sample_video, out, start_frame=10)
    image = Image.open(out)
    assert image.size == (T * SIDE + (T - 1) * 2, 3 * SIDE + 2 * 2)
    assert figures["mask_ratio"] == 0.75 and figures["loss"] > 0
    grid = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255
    original, masked = grid[:, :SIDE, :SIDE], grid[:, SIDE + 2 : 2 * SIDE + 2, :SIDE]
    grey = (masked - 0.5).abs().amax(dim=0) < 1e-2
    assert 0.5 < grey.float().mean() <= 0.8  # 12 of 16 patches greyed (a real patch may also be grey)
    assert torch.allclose(masked[:, ~grey], original[:, ~grey], atol=1 / 255)
    with pytest.raises(WtoursError, match="runs past the end"):
        write_reconstruction(run.run_dir, sample_video, out, start_frame=10_000)


def test_exported_encoder_is_an_image_encoder_for_the_evaluations(tmp_path: Path, sample_clips) -> None:
    """The engine writes VideoMAE's own encoder spec beside its weights, so k-NN/linear/DAVIS load it."""
    from wtours.trainers.evaluation.features import cls_features, load_encoder, patch_features, patch_size_of
    from wtours.trainers.training.engine import pretrain

    run = pretrain(tiny_videomae_config(tmp_path, **{"optim.epochs": 1, "optim.steps_per_epoch": 1}), sample_clips,
                   show_progress=False)  # fmt: skip
    encoder = load_encoder(None, run.run_dir / "encoder.safetensors")
    images = torch.rand(2, 3, SIDE, SIDE)
    with torch.no_grad():
        features = cls_features(encoder, images, n_last_blocks=1)
        grid = patch_features(encoder, images)
    assert features.shape[0] == 2 and torch.isfinite(features).all()
    patch = patch_size_of(encoder)
    assert grid.shape[:3] == (2, SIDE // patch, SIDE // patch)


def test_trains_on_curated_clips(tmp_path: Path, sample_video: Path) -> None:
    import shutil

    import numpy as np
    import pandas as pd

    from wtours.pipelines.clip_index import ClipSpec
    from wtours.pipelines.clipdata import ClipDataset
    from wtours.pipelines.curate import CurateOptions, curate_video
    from wtours.pipelines.proxy import ProxySettings
    from wtours.store import Store
    from wtours.trainers.training.engine import pretrain

    store = Store.at(tmp_path / "data")
    store.videos_dir.mkdir(parents=True)
    shutil.copy(sample_video, store.video_path("walk"))
    n_frames = 180  # 6 s at 30 fps, one shot, nothing blank or frozen
    frame = np.arange(n_frames)
    store.analysis_dir("walk").mkdir(parents=True)
    pd.DataFrame({"frame": frame, "time": frame / 30, "lightness": 50.0, "luma": 0.5, "blank": False,
                  "frozen": False}).to_parquet(store.analysis_dir("walk") / "frames.parquet")  # fmt: skip
    pd.DataFrame({"shot": [0], "start_frame": [0], "end_frame": [n_frames]}).to_parquet(
        store.analysis_dir("walk") / "shots.parquet"
    )
    options = CurateOptions(ClipSpec(T, 2), ProxySettings(short_side=40, frames_per_shard=64))
    curate_video(store, "walk", options, show_progress=False)
    dataset = ClipDataset(store.root, frames_per_clip=T, stride=2)
    config = tiny_videomae_config(tmp_path, **{"optim.epochs": 1, "optim.steps_per_epoch": 3})
    result = pretrain(config, dataset, show_progress=False)
    assert result.steps_done == 3 and np.isfinite(result.last_loss)
