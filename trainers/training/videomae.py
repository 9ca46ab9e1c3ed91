"""VideoMAE (Tong et al., 2022) as a method module: tube-masked video autoencoding.

A clip of T frames is cut into tubelets of 2 frames x 16 x 16 pixels. One random spatial mask per clip,
repeated over time (tube masking), hides 90% of the tubelets; the encoder (a ViT with joint space-time
attention) sees only the visible ones; a light decoder (4 blocks) fills in the rest and predicts each
masked tubelet's pixels, normalised by that tubelet's own mean and standard deviation; the loss is the
mean squared error on masked tubelets only. As the paper (Tong et al., NeurIPS 2022, arXiv:2203.12602) and,
where it leaves details open, its official pre-training code, run_mae_pretraining.py of
github.com/MCG-NJU/VideoMAE (the presets videomae_* name the exact scripts).

The masks, the multi-scale crop and the flip are drawn in `VideoMAE.views` from the engine's per-step
generator (the data path), so a resumed run sees exactly the masks the uninterrupted run would have seen.

As an image encoder (k-NN, linear probe, DAVIS), an image is a clip of one tubelet whose frames are all
the same image: the 3-D patch embedding then equals a 2-D one whose kernel is the tubelet kernel summed
over time, and the position embedding is the one of the first time step. `image_encoder` builds exactly
that network as a plain timm ViT (no [CLS] token, mean-pooled normed tokens): `encoder()` returns it and
`encoder_spec()` describes it for the export, so every evaluation loads a VideoMAE run like any other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import Field, field_validator, model_validator
from torch import nn

from wtours.errors import WtoursError
from wtours.trainers.training.backbones import BackboneSpec, sinusoid_table, timm_vit_name
from wtours.trainers.training.config import BackboneConfig, MethodOptions, TrainConfig
from wtours.trainers.training.methods import Method, ScheduleShape, StepState
from wtours.trainers.training.views import normalize, resized_crop

# (width, depth, heads) of the standard ViT sizes; BackboneConfig's overrides replace any of them.
VIT_SIZES = {"vit_tiny": (192, 12, 3), "vit_small": (384, 12, 6), "vit_base": (768, 12, 12)}


class Options(MethodOptions):
    """The ``videomae:`` section of a config."""

    mask_ratio: float = Field(0.9, gt=0, lt=1, description="share of tubes hidden; the paper uses 0.75 on small data")
    tubelet_size: int = Field(2, ge=1, description="frames per tubelet; data.frames_per_clip must be a multiple")
    crop_size: int = Field(224, ge=8, description="side of the square training crop, a multiple of the patch size")
    crop_scales: tuple[float, ...] = Field(
        (1.0, 0.875, 0.75, 0.66), description="crop sides as fractions of the clip's short side (multi-scale crop)"
    )
    max_aspect_distortion: int = Field(1, ge=0, description="how many scale steps width and height may differ")
    crop_offsets: Literal["grid", "uniform"] = Field(
        "grid",
        description="where a crop may sit: 'grid' = the official 13 fixed offsets (corners, centre, edge "
        "centres, quarter points), 'uniform' = anywhere",
    )
    flip_p: float = Field(0.0, ge=0, le=1, description="horizontal flip per clip; the paper's pre-training uses none")
    position_embedding: Literal["1d", "3d"] = Field(
        "1d",
        description="'1d' = the paper's one sinusoid over the flattened (t, h, w) token index; '3d' = a "
        "factorised space-time sinusoid (a wtours variant)",
    )
    decoder_dim: int = Field(192, ge=8, description="192 with ViT-S, 384 with ViT-B")
    decoder_depth: int = Field(4, ge=1)
    decoder_num_heads: int = Field(3, ge=1)
    normalize_target: bool = Field(True, description="per-tubelet normalised pixels (the paper); False = raw pixels")

    @field_validator("crop_scales")
    @classmethod
    def _scales_in_range(cls, scales: tuple[float, ...]) -> tuple[float, ...]:
        if not scales or not all(0 < scale <= 1 for scale in scales):
            raise ValueError("crop scales must be fractions in (0, 1]")
        return scales


class Config(TrainConfig):
    """A VideoMAE run: the shared sections and ``videomae:``; its clips must hold whole tubelets."""

    method: Literal["videomae"] = "videomae"
    videomae: Options = Options()

    @model_validator(mode="after")
    def _whole_tubelets(self) -> Config:
        if self.data.frames_per_clip % self.videomae.tubelet_size:
            raise ValueError(
                f"data.frames_per_clip={self.data.frames_per_clip} is not a multiple of videomae.tubelet_size="
                f"{self.videomae.tubelet_size}"
            )
        return self


# ---------------------------------------------------------------------------------------------------------
# The maths: masks, targets, position embeddings, loss (pure functions, tested on small tensors)


def masked_per_frame(patches_per_frame: int, mask_ratio: float) -> int:
    """How many of a frame's patches a tube mask hides: ``int(mask_ratio * patches)``, as the official
    ``TubeMaskingGenerator`` (176 of 196 at 0.9; 57 of 64 at 0.9 on an 8 x 8 grid)."""
    hidden = int(mask_ratio * patches_per_frame)
    if not 0 < hidden < patches_per_frame:
        raise WtoursError(
            f"videomae.mask_ratio={mask_ratio} hides {hidden} of {patches_per_frame} patches per frame: "
            "at least one must be hidden and one visible"
        )
    return hidden


def tube_mask(
    batch_size: int, time_steps: int, patches_per_frame: int, mask_ratio: float, generator: torch.Generator
) -> torch.Tensor:
    """[batch, time_steps * patches_per_frame] bool, True = hidden; token order is (time, row, column).

    Each clip draws one spatial mask with exactly `masked_per_frame` hidden patches and repeats it at every
    time step, so a hidden region cannot be copied from a neighbouring frame.
    """
    hidden = masked_per_frame(patches_per_frame, mask_ratio)
    order = torch.rand(batch_size, patches_per_frame, generator=generator).argsort(dim=1)
    spatial = torch.zeros(batch_size, patches_per_frame, dtype=torch.bool)
    spatial.scatter_(1, order[:, :hidden], True)
    return spatial.repeat(1, time_steps)


def visible_indices(mask: torch.Tensor) -> torch.Tensor:
    """[batch, visible] token indices in increasing order (every row hides the same number of tokens)."""
    return (~mask).nonzero()[:, 1].view(len(mask), -1)


def tubelets(pixels: torch.Tensor, tubelet_size: int, patch_size: int) -> torch.Tensor:
    """[B, T, C, H, W] -> [B, tokens, tubelet_size * patch * patch, C], tokens in (time, row, column) order."""
    b, t, c, h, w = pixels.shape
    grid = (t // tubelet_size, h // patch_size, w // patch_size)
    x = pixels.reshape(b, grid[0], tubelet_size, c, grid[1], patch_size, grid[2], patch_size)
    x = x.permute(0, 1, 4, 6, 2, 5, 7, 3)  # B, t', h', w', tubelet, p, p, C
    return x.reshape(b, math.prod(grid), tubelet_size * patch_size * patch_size, c)


def untubelet(tokens: torch.Tensor, shape: tuple[int, int, int, int, int], tubelet_size: int, patch_size: int):
    """The inverse of `tubelets`: [B, tokens, tubelet * patch * patch, C] -> pixels of ``shape`` [B, T, C, H, W]."""
    b, t, c, h, w = shape
    grid = (t // tubelet_size, h // patch_size, w // patch_size)
    x = tokens.reshape(b, *grid, tubelet_size, patch_size, patch_size, c)
    x = x.permute(0, 1, 4, 7, 2, 5, 3, 6)  # B, t', tubelet, C, h', p, w', p
    return x.reshape(shape)


def tubelet_statistics(pixel_tubelets: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Per tubelet and channel: mean and standard deviation (unbiased) + eps, over the tubelet's pixels."""
    mean = pixel_tubelets.mean(dim=-2, keepdim=True)
    std = pixel_tubelets.var(dim=-2, unbiased=True, keepdim=True).sqrt() + eps
    return mean, std


def reconstruction_targets(
    pixels: torch.Tensor, tubelet_size: int, patch_size: int, normalize_target: bool = True
) -> torch.Tensor:
    """What the decoder must predict: [B, tokens, tubelet * patch * patch * C] from pixels [B, T, C, H, W]
    in [0, 1] (before the ImageNet normalisation), each tubelet normalised by its own statistics."""
    x = tubelets(pixels.float(), tubelet_size, patch_size)
    if normalize_target:
        mean, std = tubelet_statistics(x)
        x = (x - mean) / std
    return x.flatten(2)


def masked_reconstruction_loss(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the hidden tokens only ([B, tokens, D] each, ``mask`` [B, tokens] bool).

    Visible tokens are dropped before any arithmetic, so nothing they hold (not even a NaN) reaches the loss.
    """
    return (prediction[mask].float() - target[mask].float()).pow(2).mean()


def sinusoid_position_embedding(grid: tuple[int, int, int], dim: int, kind: str = "1d") -> torch.Tensor:
    """Fixed [tokens, dim] embedding of a (time, rows, columns) token grid in (time, row, column) order.

    ``1d`` (the paper): VideoMAE's ``get_sinusoid_encoding_table`` over the flattened token index — channel j of
    token p is sin or cos (even / odd j) of p / 10000^(2 (j // 2) / dim). ``3d``: `factorised_position_embedding`.
    """
    if kind == "1d":
        return sinusoid_table(math.prod(grid), dim)
    return factorised_position_embedding(grid, dim)


def _sinusoid(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer sinusoids of ``positions`` [n]: [n, dim] = [sin(p w_k)..., cos(p w_k)...], w_k = 1e4^(-2k/dim)."""
    frequencies = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim // 2))
    angles = positions.double().unsqueeze(1) * frequencies
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def factorised_position_embedding(grid: tuple[int, int, int], dim: int) -> torch.Tensor:
    """A wtours variant (``position_embedding: 3d``) of the fixed [tokens, dim] embedding.

    Factorised: a third of the channels (rounded to even) encodes the row, a third the column, the rest the
    time step. Unlike one sinusoid over the flattened index, this keeps the spatial layout, so the embedding
    of any one time step is a 2-D one that resamples cleanly when the image size changes.
    """
    spatial_dim = 2 * (dim // 6)
    time_dim = dim - 2 * spatial_dim
    if spatial_dim == 0:
        raise WtoursError(f"embedding width {dim} is too small for a space-time position embedding (>= 6)")
    t, y, x = torch.meshgrid(*(torch.arange(n) for n in grid), indexing="ij")
    parts = [_sinusoid(t.flatten(), time_dim), _sinusoid(y.flatten(), spatial_dim), _sinusoid(x.flatten(), spatial_dim)]
    return torch.cat(parts, dim=1).float()


# ---------------------------------------------------------------------------------------------------------
# The networks


def _blocks(dim: int, depth: int, num_heads: int, drop_path_rate: float) -> nn.ModuleList:
    """timm ViT blocks (joint attention over every token given; fused scaled-dot-product attention)."""
    from timm.models.vision_transformer import Block

    rates = torch.linspace(0, drop_path_rate, depth).tolist()
    return nn.ModuleList(Block(dim, num_heads, mlp_ratio=4.0, qkv_bias=True, drop_path=rate) for rate in rates)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class TubeletEmbed(nn.Module):
    """Non-overlapping tubelets -> tokens: a 3-D convolution whose kernel and stride are the tubelet."""

    def __init__(self, dim: int, tubelet_size: int, patch_size: int) -> None:
        super().__init__()
        self.tubelet_size, self.patch_size = tubelet_size, patch_size
        size = (tubelet_size, patch_size, patch_size)
        self.proj = nn.Conv3d(3, dim, kernel_size=size, stride=size)  # PyTorch's default init, as official

    def forward(self, clips: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """[B, 3, T, H, W] -> tokens [B, T/t * H/p * W/p, dim] and the token grid (time, rows, columns)."""
        x = self.proj(clips)
        return x.flatten(2).transpose(1, 2), tuple(x.shape[2:])


class VideoMAEEncoder(nn.Module):
    """A ViT over tubelet tokens with fixed space-time position embeddings and no [CLS] token."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        tubelet_size: int,
        patch_size: int,
        drop_path_rate: float = 0.0,
        position_embedding: str = "1d",
    ) -> None:
        super().__init__()
        self.dim = dim
        self.position_embedding = position_embedding
        self.patch_embed = TubeletEmbed(dim, tubelet_size, patch_size)
        self.blocks = _blocks(dim, depth, num_heads, drop_path_rate)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.blocks.apply(_init_weights)

    def forward(
        self, clips: torch.Tensor, visible_index: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """Normed tokens [B, visible (or all), dim] of clips [B, 3, T, H, W], and the full token grid."""
        x, grid = self.patch_embed(clips)
        x = x + sinusoid_position_embedding(grid, self.dim, self.position_embedding).to(x.device, x.dtype)
        if visible_index is not None:
            x = x.gather(1, visible_index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        for block in self.blocks:
            x = block(x)
        return self.norm(x), grid


class VideoMAEDecoder(nn.Module):
    """Visible tokens + a shared mask token at every hidden position -> pixel predictions for every token."""

    def __init__(
        self, encoder_dim: int, dim: int, depth: int, num_heads: int, out_dim: int, position_embedding: str = "1d"
    ) -> None:
        super().__init__()
        self.dim = dim
        self.position_embedding = position_embedding
        self.embed = nn.Linear(encoder_dim, dim, bias=False)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = _blocks(dim, depth, num_heads, 0.0)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, out_dim)
        self.apply(_init_weights)
        # As the official model: the encoder-to-decoder projection keeps PyTorch's default init (the official
        # xavier init is applied inside the decoder only), the mask token is truncated at one std.
        self.embed.reset_parameters()
        nn.init.trunc_normal_(self.mask_token, std=0.02, a=-0.02, b=0.02)

    def forward(
        self, visible_tokens: torch.Tensor, visible_index: torch.Tensor, grid: tuple[int, int, int]
    ) -> torch.Tensor:
        x = self.embed(visible_tokens)
        batch, tokens = len(x), math.prod(grid)
        full = self.mask_token.to(x.dtype).expand(batch, tokens, self.dim)
        full = full.scatter(1, visible_index.unsqueeze(-1).expand(-1, -1, self.dim), x)
        x = full + sinusoid_position_embedding(grid, self.dim, self.position_embedding).to(x.device, x.dtype)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


class VideoMAENetwork(nn.Module):
    """Encoder on visible tubelets + decoder: predictions [B, tokens, tubelet * patch * patch * 3]."""

    def __init__(self, encoder: VideoMAEEncoder, decoder: VideoMAEDecoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, clips: torch.Tensor, visible_index: torch.Tensor) -> torch.Tensor:
        visible_tokens, grid = self.encoder(clips, visible_index)
        return self.decoder(visible_tokens, visible_index, grid)


# ---------------------------------------------------------------------------------------------------------
# The encoder as an image encoder


def image_encoder_spec(encoder: VideoMAEEncoder, image_size: int, arch: str = "vit_base") -> BackboneSpec:
    """The timm ViT that `image_encoder` fills: mean-pooled normed tokens, no [CLS], no classifier. ``arch``
    and the patch size name it (``vit_small_patch16_224``); the keyword arguments set every dimension. At other
    image sizes its position table is VideoMAE's sinusoid of the new grid (``1d``) or timm's resample (``3d``)."""
    patch_size = encoder.patch_embed.patch_size
    first = encoder.blocks[0]
    kwargs = {
        "img_size": image_size,
        "patch_size": patch_size,
        "embed_dim": encoder.dim,
        "depth": len(encoder.blocks),
        "num_heads": first.attn.num_heads,
        "class_token": False,
        "global_pool": "avg",
        "fc_norm": False,
    }
    rule = "sinusoid" if encoder.position_embedding == "1d" else "timm"
    return BackboneSpec(timm_vit_name(arch, patch_size), kwargs, rule)


@torch.no_grad()
def image_encoder(encoder: VideoMAEEncoder, image_size: int, arch: str = "vit_base") -> nn.Module:
    """A timm ViT on images equal to ``encoder`` on one-tubelet clips of the image repeated in time.

    Its forward returns the mean of the normed tokens (VideoMAE has no [CLS]); ``forward_features`` gives
    the tokens. The fixed position embedding of the first time step becomes its (frozen) ``pos_embed``.
    """
    spec = image_encoder_spec(encoder, image_size, arch)
    vit = spec.create(dynamic_img_size=True)
    grid = (1, image_size // encoder.patch_embed.patch_size, image_size // encoder.patch_embed.patch_size)
    state = {
        "patch_embed.proj.weight": encoder.patch_embed.proj.weight.sum(dim=2),
        "patch_embed.proj.bias": encoder.patch_embed.proj.bias,
        "pos_embed": sinusoid_position_embedding(grid, encoder.dim, encoder.position_embedding).unsqueeze(0),
        **{f"blocks.{name}": value for name, value in encoder.blocks.state_dict().items()},
        **{f"norm.{name}": value for name, value in encoder.norm.state_dict().items()},
    }
    vit.load_state_dict({name: value.detach().float().cpu() for name, value in state.items()})
    return vit.eval()


# ---------------------------------------------------------------------------------------------------------
# The data path: multi-scale crop, flip, masks, targets


def multi_scale_crop_boxes(
    n: int,
    height: int,
    width: int,
    scales: tuple[float, ...],
    max_aspect_distortion: int,
    generator: torch.Generator,
    *,
    output_size: int = 224,
    offsets: str = "grid",
) -> torch.Tensor:
    """TSN's ``GroupMultiScaleCrop`` as VideoMAE pre-trains with it: [n, 4] boxes (top, left, height, width).

    Crop sides are ``int(short side * scale)`` for each listed scale, a side within 3 px of ``output_size``
    snapped to it; a (width, height) pair is drawn uniformly among those at most ``max_aspect_distortion`` list
    steps apart; the box sits on one of 13 fixed offsets drawn uniformly (the corners, the centre, the edge
    centres and the four quarter points, steps of (free space) // 4: ``fill_fix_offset`` with
    ``more_fix_crop``), or anywhere with ``offsets="uniform"``.
    """
    sides = [int(min(height, width) * scale) for scale in scales]
    sides = [output_size if abs(side - output_size) < 3 else side for side in sides]
    pairs = [(w, h) for i, h in enumerate(sides) for j, w in enumerate(sides) if abs(i - j) <= max_aspect_distortion]
    choice = torch.randint(len(pairs), (n,), generator=generator)
    size = torch.tensor(pairs, dtype=torch.long)[choice]
    crop_w, crop_h = size[:, 0], size[:, 1]
    if offsets == "uniform":
        left = (torch.rand(n, generator=generator, dtype=torch.float64) * (width - crop_w + 1)).floor().long()
        top = (torch.rand(n, generator=generator, dtype=torch.float64) * (height - crop_h + 1)).floor().long()
    else:
        grid = torch.tensor(
            [(0, 0), (4, 0), (0, 4), (4, 4), (2, 2), (0, 2), (4, 2), (2, 4), (2, 0), (1, 1), (3, 1), (1, 3), (3, 3)]
        )
        position = grid[torch.randint(len(grid), (n,), generator=generator)]
        left = position[:, 0] * torch.div(width - crop_w, 4, rounding_mode="floor")
        top = position[:, 1] * torch.div(height - crop_h, 4, rounding_mode="floor")
    return torch.stack([top, left, crop_h, crop_w], dim=1)


def center_crop_box(height: int, width: int) -> torch.Tensor:
    """The central square of the short side: [1, 4] (top, left, height, width) (evaluation, reconstruction)."""
    side = min(height, width)
    return torch.tensor([[(height - side) // 2, (width - side) // 2, side, side]])


@dataclass
class MaskedClips:
    """One step's inputs: normalised clips, which tokens are hidden, and the pixel targets."""

    clips: torch.Tensor  # [B, 3, T, S, S] float, ImageNet-normalised
    mask: torch.Tensor  # [B, tokens] bool, True = hidden
    visible_index: torch.Tensor  # [B, visible] long
    targets: torch.Tensor  # [B, tokens, tubelet * patch * patch * 3] float32


class VideoMAE(Method):
    scales_min_lr = True  # the official script scales lr, min_lr and warmup_lr by batch / 256

    def __init__(self, backbone: BackboneConfig, options: Options) -> None:
        super().__init__()
        self.options = options
        self.patch_size = backbone.patch_size
        self.arch = backbone.arch
        if options.crop_size % self.patch_size:
            raise WtoursError(
                f"videomae.crop_size={options.crop_size} is not a multiple of backbone.patch_size={self.patch_size}"
            )
        patches_per_frame = (options.crop_size // self.patch_size) ** 2
        masked_per_frame(patches_per_frame, options.mask_ratio)  # a ratio that hides none or all is an error now
        default_dim, default_depth, default_heads = VIT_SIZES[backbone.arch]
        encoder = VideoMAEEncoder(
            backbone.embed_dim or default_dim,
            backbone.depth or default_depth,
            backbone.num_heads or default_heads,
            options.tubelet_size,
            self.patch_size,
            backbone.drop_path_rate,
            options.position_embedding,
        )
        pixels_per_token = options.tubelet_size * self.patch_size**2 * 3
        decoder = VideoMAEDecoder(
            encoder.dim,
            options.decoder_dim,
            options.decoder_depth,
            options.decoder_num_heads,
            pixels_per_token,
            options.position_embedding,
        )
        self.student = VideoMAENetwork(encoder, decoder)
        self.teacher = None

    def prepare(self, pixels: torch.Tensor, generator: torch.Generator) -> MaskedClips:
        """Mask and targets for already cropped clips [B, T, 3, S, S] in [0, 1]."""
        batch, time, _, height, width = pixels.shape
        patches_per_frame = (height // self.patch_size) * (width // self.patch_size)
        time_steps = time // self.options.tubelet_size
        mask = tube_mask(batch, time_steps, patches_per_frame, self.options.mask_ratio, generator).to(pixels.device)
        targets = reconstruction_targets(
            pixels, self.options.tubelet_size, self.patch_size, self.options.normalize_target
        )
        clips = normalize(pixels.flatten(0, 1)).view_as(pixels).transpose(1, 2)
        return MaskedClips(clips, mask, visible_indices(mask), targets)

    def views(self, batch: dict[str, Any], generator: torch.Generator) -> MaskedClips:
        """One multi-scale crop per clip (the same box for all its frames, resized bilinearly with antialias as
        PIL does), an optional flip (off in the paper's recipe), then a tube mask per clip."""
        frames = batch["frames"]  # uint8 [B, T, 3, H, W]
        batch_size, time, _, height, width = frames.shape
        images = frames.flatten(0, 1).float().div_(255)
        options = self.options
        boxes = multi_scale_crop_boxes(
            batch_size, height, width, options.crop_scales, options.max_aspect_distortion, generator,
            output_size=options.crop_size, offsets=options.crop_offsets,
        )  # fmt: skip
        crops = resized_crop(images, boxes.repeat_interleave(time, dim=0), options.crop_size, "bilinear_aa")
        if options.flip_p > 0:
            flip = (torch.rand(batch_size, generator=generator) < options.flip_p).to(crops.device)
            crops = torch.where(flip.repeat_interleave(time).view(-1, 1, 1, 1), crops.flip(-1), crops)
        return self.prepare(crops.view(batch_size, time, *crops.shape[1:]), generator)

    def training_step(
        self, views: MaskedClips, step: StepState, student: nn.Module
    ) -> tuple[torch.Tensor, dict[str, float]]:
        prediction = student(views.clips, views.visible_index)
        return masked_reconstruction_loss(prediction, views.targets, views.mask), {}

    def no_weight_decay(self) -> frozenset[str]:
        """As the official ``no_weight_decay``: no decay on the mask token (the position tables are fixed)."""
        return frozenset({"decoder.mask_token"})

    def encoder(self) -> nn.Module:
        """The encoder as an image encoder (see `image_encoder`), on CPU in float32."""
        return image_encoder(self.student.encoder, self.options.crop_size, self.arch)

    def encoder_spec(self) -> BackboneSpec:
        """How timm rebuilds `encoder()`, to be written beside the exported weights: it follows from the
        network itself."""
        return image_encoder_spec(self.student.encoder, self.options.crop_size, self.arch)


def build(backbone: BackboneConfig, options: Options, shape: ScheduleShape) -> VideoMAE:
    """VideoMAE keeps no per-step schedule of its own: ``shape`` is part of the method interface."""
    return VideoMAE(backbone, options)


def pixels_from_clip(frames: torch.Tensor, crop_size: int) -> torch.Tensor:
    """The deterministic view of uint8 clips [B, T, 3, H, W]: the central square, resized; [B, T, 3, S, S]."""
    batch, time, _, height, width = frames.shape
    box = center_crop_box(height, width).expand(batch * time, 4)
    crops = resized_crop(frames.flatten(0, 1).float().div_(255), box, crop_size, "bilinear_aa")
    return crops.view(batch, time, *crops.shape[1:])


def reconstruct(method: VideoMAE, pixels: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Original, masked and reconstructed pixels [B, T, 3, S, S] of clips already cropped to the model's size,
    with the mask, the raw prediction and the targets (per token).

    The reconstruction keeps the visible tubelets and fills each hidden one with the prediction, mapped back
    to pixels with that tubelet's true mean and standard deviation (the target was normalised by them).
    """
    inputs = method.prepare(pixels, generator)
    with torch.no_grad():
        prediction = method.student(inputs.clips, inputs.visible_index).float()
    tubelet_size, patch_size = method.options.tubelet_size, method.patch_size
    pixel_tubelets = tubelets(pixels.float(), tubelet_size, patch_size)
    predicted = prediction.view_as(pixel_tubelets)
    if method.options.normalize_target:
        mean, std = tubelet_statistics(pixel_tubelets)
        predicted = predicted * std + mean
    hidden = inputs.mask.view(*inputs.mask.shape, 1, 1)
    filled = torch.where(hidden, predicted, pixel_tubelets).clamp(0, 1)
    grey = torch.full_like(pixel_tubelets, 0.5)
    masked = torch.where(hidden, grey, pixel_tubelets)
    shape = tuple(pixels.shape)
    return {
        "original": pixels,
        "masked": untubelet(masked, shape, tubelet_size, patch_size),
        "reconstructed": untubelet(filled, shape, tubelet_size, patch_size),
        "mask": inputs.mask,
        "prediction": prediction,
        "targets": inputs.targets,
    }
