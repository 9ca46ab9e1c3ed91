"""Pretraining: one engine for every method.

Where to change one thing:

- a loss, head or view recipe: the method's module (``dino.py``, ``dora.py``, ``videomae.py``); what DINO and
  DoRA share (projection head, centred and sharpened cross-entropy, loss center, EMA teacher, last-layer
  freeze) is ``self_distillation.py``; the interface a method implements is ``methods.Method``, and
  ``methods.METHODS`` registers it;
- the training loop, precision, DDP, checkpoints, metrics: ``engine.py`` (written once for all, naming no
  method); resuming: ``resume.py``;
- lr / weight-decay schedules: ``schedules.py``; crops and colour augmentation: ``views.py``;
- the encoder: ``backbones.py`` (timm ViTs, export to safetensors); last-block attention: ``attention.py``;
- the configuration (``run``, ``backbone``, ``optim``, ``data`` and the method's own section): ``config.py``;
  what the engine reads: ``data.py``.
"""
