"""Self-supervised pretraining: one engine, one module per method (DINO, DoRA, VideoMAE).

Where to change one thing:

- a loss, head or view recipe: the method's module (``dino.py``, ``dora.py``, ``videomae.py``);
  the interface it implements is ``methods.Method``, and ``methods.METHODS`` registers it;
- the training loop, precision, DDP, checkpoints, metrics: ``engine.py`` (written once for all);
- lr / weight-decay / EMA schedules: ``schedules.py``; crops and colour augmentation: ``views.py``;
- the encoder: ``backbones.py`` (timm ViTs, export to safetensors); last-block attention: ``attention.py``;
- defaults: ``presets/*.yaml``, validated by ``config.py``; evaluation: ``knn.py``, ``eval_*.py``.
"""
