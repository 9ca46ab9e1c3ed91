"""bf16 on a CPU: autocast where the CPU has bf16 instructions (with timm's explicit attention, which is the
fast path there), fp32 with a notice where it has none, fp16 refused (tests/faults/test_inputs.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch

from wtours.trainers.training import engine
from wtours.trainers.training.engine import pretrain, use_explicit_attention

native_bf16 = pytest.mark.skipif(not engine.cpu_has_native_bf16(), reason="this CPU has no bf16 instructions")


def _losses(run_dir: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").open()]


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def test_explicit_attention_gives_the_fused_numbers() -> None:
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", patch_size=8, embed_dim=48, depth=3, num_heads=3, img_size=32,
                            num_classes=0).eval()  # fmt: skip
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        fused = vit(images)
        assert use_explicit_attention(vit) == 3  # one per block
        explicit = vit(images)
    assert all(block.attn.fused_attn is False for block in vit.blocks)
    assert torch.allclose(fused, explicit, atol=1e-5)
    assert use_explicit_attention(vit) == 0  # already explicit


@native_bf16
def test_cpu_bf16_trains_under_autocast_with_explicit_attention(tmp_path: Path, sample_frames, tiny_config,
                                                                 monkeypatch) -> None:  # fmt: skip
    switched: list[int] = []
    original = engine.use_explicit_attention
    monkeypatch.setattr(engine, "use_explicit_attention", lambda module: switched.append(original(module)))
    fp32 = pretrain(tiny_config(tmp_path, **{"run.name": "fp32"}), sample_frames, show_progress=False)
    assert switched == []  # fp32 keeps fused attention
    bf16 = pretrain(tiny_config(tmp_path, **{"run.name": "bf16", "run.precision": "bf16"}), sample_frames,
                    show_progress=False)  # fmt: skip
    assert switched and switched[0] >= 2  # the student's and the teacher's blocks
    assert _summary(bf16.run_dir)["precision"] == "bf16" and _summary(fp32.run_dir)["precision"] == "fp32"
    fp32_losses, bf16_losses = _losses(fp32.run_dir), _losses(bf16.run_dir)
    assert fp32_losses != bf16_losses  # autocast changed the arithmetic ...
    assert bf16_losses == pytest.approx(fp32_losses, rel=0.05)  # ... by rounding, not by training otherwise


def test_bf16_on_a_cpu_without_it_trains_in_fp32_and_says_so(tmp_path: Path, sample_frames, tiny_config,
                                                            monkeypatch, capsys) -> None:  # fmt: skip
    fp32 = pretrain(tiny_config(tmp_path, **{"run.name": "fp32"}), sample_frames, show_progress=False)
    monkeypatch.setattr(engine, "cpu_has_native_bf16", lambda: False)
    capsys.readouterr()
    asked = pretrain(tiny_config(tmp_path, **{"run.name": "asked", "run.precision": "bf16"}), sample_frames,
                     show_progress=False)  # fmt: skip
    notice = capsys.readouterr().err
    assert "this CPU has no bf16 instructions" in notice and "training in fp32" in notice
    assert _summary(asked.run_dir)["precision"] == "fp32"
    assert _losses(asked.run_dir) == _losses(fp32.run_dir)  # bit for bit the fp32 run
