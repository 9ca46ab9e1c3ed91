"""Self-supervised pretraining: one engine, one module per method (DINO, DoRA, VideoMAE)."""
