"""Self-supervised pretraining and what is measured of it, in two subpackages that depend one way:

- ``training`` (``wtours.trainers.training``): one engine, one module per method (DINO, DoRA, VideoMAE) and
  the pieces they share (self-distillation head, loss, center and EMA teacher; views; schedules; backbones;
  checkpoints). It imports nothing from evaluation.
- ``evaluation`` (``wtours.trainers.evaluation``): frozen-encoder features, k-NN, linear probe, attention
  maps, DAVIS label propagation, DoRA's tracks, VideoMAE's reconstructions, and ``compare`` of several runs.
  It loads what training exported (``encoder.safetensors``, ``checkpoint.pt``: see ``wtours.store.RunDir``).

Defaults of every method live in ``presets/*.yaml``, validated by ``training.config``.
"""
