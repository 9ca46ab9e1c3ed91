"""What DINO and DoRA share: self-distillation of a student into an EMA teacher (Caron et al., ICCV 2021,
arXiv:2104.14294; as main_dino.py in github.com/facebookresearch/dino, which the DoRA release reuses).

- ``DinoHead``: MLP -> bottleneck -> L2-normalise -> weight-normalised prototypes (its ``last_layer`` is frozen
  for the first ``optim.freeze_last_layer`` epochs);
- ``dino_loss``: the teacher's centred, sharpened softmax against the student's, over pairs of views;
- ``updated_center``: the EMA of the teacher's mean output (against collapse);
- ``SelfDistillation``: a student (backbone + head), its EMA teacher, the loss center and the per-epoch
  teacher temperatures; DINO and DoRA add their views and loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from wtours.trainers.training import distributed
from wtours.trainers.training.backbones import BackboneSpec, embed_dim
from wtours.trainers.training.config import BackboneConfig, MethodOptions
from wtours.trainers.training.methods import Method, ScheduleShape, StepState
from wtours.trainers.training.schedules import cosine_schedule, linear_warmup_then_constant


class HeadLossOptions(MethodOptions):
    """The projection head and the centred, sharpened loss: shared by DINO and DoRA."""

    out_dim: int = Field(65536, ge=2, description="prototypes; lower (e.g. 4096) on small data")
    hidden_dim: int = Field(2048, ge=1)
    bottleneck_dim: int = Field(256, ge=1)
    norm_last_layer: bool = Field(True, description="False trains faster but can be unstable (ViT-S: False)")
    student_temp: float = Field(0.1, gt=0)
    teacher_temp: float = Field(0.04, gt=0)
    warmup_teacher_temp: float = Field(0.04, gt=0)
    warmup_teacher_temp_epochs: int = Field(0, ge=0, description="epochs of linear teacher-temperature warm-up")
    center_momentum: float = Field(0.9, ge=0, le=1)


class ColourOptions(MethodOptions):
    """How often each view's colours are jittered and turned grey: DINO's (and the DoRA release's) 0.8 and 0.2.

    Lowering them is for small studies only: on a few hundred CPU steps over scenes told apart by colour, these
    augmentations (which make the targets colour-invariant) slow learning several-fold."""

    color_jitter_p: float = Field(0.8, ge=0, le=1, description="chance of ColorJitter(0.4, 0.4, 0.2, 0.1) per view")
    grayscale_p: float = Field(0.2, ge=0, le=1, description="chance of RandomGrayscale per view")


class DinoHead(nn.Module):
    """MLP (``nlayers`` deep, GELU) -> bottleneck -> L2-normalise -> weight-normalised linear layer."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        nlayers: int = 3,
        norm_last_layer: bool = True,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim), nn.GELU()]
        for _ in range(nlayers - 2):
            layers += [nn.Linear(hidden_dim, hidden_dim), nn.GELU()]
        layers.append(nn.Linear(hidden_dim, bottleneck_dim))
        self.mlp = nn.Sequential(*layers)
        for module in self.mlp:
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        self.last_layer = nn.utils.parametrizations.weight_norm(
            nn.Linear(bottleneck_dim, out_dim, bias=False)
        )
        magnitude = self.last_layer.parametrizations.weight.original0
        nn.init.ones_(magnitude)
        # A fixed unit norm keeps early training stable; letting it learn is faster but riskier.
        magnitude.requires_grad = not norm_last_layer

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.last_layer(F.normalize(self.mlp(features), dim=-1))


class MultiCropNetwork(nn.Module):
    """Backbone + head over a list of views of different sizes: one backbone call per size."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, views: list[torch.Tensor]) -> torch.Tensor:
        features = []
        start = 0
        while start < len(views):
            end = start
            while end < len(views) and views[end].shape[-2:] == views[start].shape[-2:]:
                end += 1
            features.append(self.backbone(torch.cat(views[start:end])))
            start = end
        return self.head(torch.cat(features))


def dino_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    center: torch.Tensor,
    *,
    n_views: int,
    n_global: int,
    student_temp: float,
    teacher_temp: float,
) -> torch.Tensor:
    """Mean cross-entropy H(teacher view i, student view v) over all pairs with i != v.

    ``student_logits`` holds ``n_views`` chunks (globals first), ``teacher_logits`` ``n_global`` chunks,
    each chunk being the batch in the same order. The teacher is centred then sharpened.
    """
    student_log_probs = F.log_softmax(student_logits.float() / student_temp, dim=-1).chunk(n_views)
    teacher_probs = (
        F.softmax((teacher_logits.float() - center) / teacher_temp, dim=-1).detach().chunk(n_global)
    )
    total = student_logits.new_zeros((), dtype=torch.float32)
    pairs = 0
    for i, target in enumerate(teacher_probs):
        for v, log_probs in enumerate(student_log_probs):
            if v == i:
                continue
            total = total + torch.sum(-target * log_probs, dim=-1).mean()
            pairs += 1
    return total / pairs


@torch.no_grad()
def updated_center(center: torch.Tensor, teacher_logits: torch.Tensor, momentum: float) -> torch.Tensor:
    """EMA of the teacher's mean output over the global batch (all processes)."""
    batch_sum = teacher_logits.float().sum(dim=0, keepdim=True)
    count = torch.tensor(float(len(teacher_logits)), device=batch_sum.device)
    batch_sum, count = distributed.all_reduce_sum(batch_sum), distributed.all_reduce_sum(count)
    return center * momentum + (batch_sum / count) * (1 - momentum)


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """teacher <- momentum * teacher + (1 - momentum) * student, parameter by parameter."""
    student_params = [p.detach() for p in student.parameters()]
    teacher_params = list(teacher.parameters())
    torch._foreach_mul_(teacher_params, momentum)
    torch._foreach_add_(teacher_params, student_params, alpha=1 - momentum)


class SelfDistillation(Method):
    """A student (backbone + DINO head), its EMA teacher, the loss center, the per-epoch teacher temperatures,
    the per-step teacher momentum and the last-layer freeze: what DINO and DoRA share. Subclasses add their
    views and loss."""

    def __init__(
        self, backbone: BackboneConfig, options: HeadLossOptions, shape: ScheduleShape
    ) -> None:
        super().__init__()
        self.spec = BackboneSpec.from_config(backbone)
        student_backbone = self.spec.create(drop_path_rate=backbone.drop_path_rate)
        head_kwargs = dict(
            in_dim=embed_dim(student_backbone),
            out_dim=options.out_dim,
            hidden_dim=options.hidden_dim,
            bottleneck_dim=options.bottleneck_dim,
            norm_last_layer=options.norm_last_layer,
        )
        self.student = MultiCropNetwork(student_backbone, DinoHead(**head_kwargs))
        # The teacher has no stochastic depth; it starts as an exact copy of the student's weights.
        self.teacher = MultiCropNetwork(self.spec.create(drop_path_rate=0.0), DinoHead(**head_kwargs))
        self.teacher.load_state_dict(self.student.state_dict())
        self.teacher.requires_grad_(False)
        self.register_buffer("center", torch.zeros(1, options.out_dim))
        # One value per epoch, as DINOLoss: the temperature changes at epoch boundaries only.
        self.teacher_temps = linear_warmup_then_constant(
            options.warmup_teacher_temp, options.teacher_temp, shape.epochs, options.warmup_teacher_temp_epochs
        )
        # One value per step, as main_dino.py's momentum_schedule; recomputed for a resumed run's new length.
        self.momentum_schedule = cosine_schedule(shape.momentum_teacher, shape.momentum_teacher_end,
                                                 shape.total_steps)
        self.freeze_last_layer_steps = round(shape.freeze_last_layer * shape.steps_per_epoch)

    def train(self, mode: bool = True) -> SelfDistillation:
        super().train(mode)
        self.teacher.eval()
        return self

    def teacher_temp(self, step: StepState) -> float:
        return float(self.teacher_temps[min(step.epoch, len(self.teacher_temps) - 1)])

    def before_optimizer_step(self, step: StepState) -> None:
        """main_dino.py's ``cancel_gradients_last_layer``: no update of the head's last layer in the first
        ``optim.freeze_last_layer`` epochs (the prototypes settle while the rest learns)."""
        if step.step < self.freeze_last_layer_steps:
            for param in self.student.head.last_layer.parameters():
                param.grad = None

    def after_optimizer_step(self, step: StepState) -> dict[str, float]:
        """The teacher follows the student by its EMA at this step's momentum."""
        momentum = float(self.momentum_schedule[step.step])
        ema_update(self.teacher, self.student, momentum)
        return {"momentum": momentum}

    def encoder(self) -> nn.Module:
        return self.teacher.backbone

    def encoder_spec(self) -> BackboneSpec:
        return self.spec
