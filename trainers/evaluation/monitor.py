"""k-NN of the encoder while it trains: the curve that shows when a run starts to beat its floor.

`KnnMonitor` is the engine's ``Monitor`` for ``run.knn_every``: at step 0, every N steps and at the end it
exports the encoder as training would (`backbones.export_encoder`, to a temporary folder), loads it as
`wtours eval knn` does and scores the same weighted k-NN (fp32 features, T = 0.07, k = 10 and 20), so the last
point equals `wtours eval knn RUN` on the same set and the first equals `--untrained`. The record goes into the
run's ``metrics.jsonl`` as ``{"step", "knn_top1": {k: percent}}``; `wtours compare` draws the curves.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from wtours.progress import console

KS = (10, 20)
TEMPERATURE = 0.07
STUDY_IMAGE_SIZE = 64  # the built-in study set's crops


class KnnMonitor:
    def __init__(self, labelled: Path, *, every: int, image_size: int, device, announce: bool) -> None:
        self.labelled, self.every = Path(labelled), every
        self.image_size, self.device, self.announce = image_size, device, announce

    @classmethod
    def of(
        cls, config, *, study_set: Callable[[], Path] | None = None, announce: bool = True
    ) -> KnnMonitor | None:
        """The monitor ``config.run`` asks for (None when ``run.knn_every`` is not set). Without ``run.knn_data``
        it scores on ``study_set()`` (the caller's built-in study set, 64-px crops). A set that is missing or not
        a labelled set is an error here, before any step."""
        from wtours.errors import WtoursError

        run = config.run
        if run.knn_every is None:
            return None
        if run.knn_data is None:
            if study_set is None:
                raise WtoursError("run.knn_every needs run.knn_data: a labelled set (train/<class>/*, val/<class>/*)")
            labelled, default_size = study_set(), STUDY_IMAGE_SIZE
        else:
            labelled, default_size = Path(run.knn_data), 224
            classes = [sorted(p.name for p in (labelled / part).iterdir() if p.is_dir()) if (labelled / part).is_dir()
                       else [] for part in ("train", "val")]  # fmt: skip
            if not classes[0] or classes[0] != classes[1]:
                raise WtoursError(f"run.knn_data={labelled}: expected train/<class>/* and val/<class>/* images, the "
                                  "same classes in both")  # fmt: skip
        from wtours.trainers.training.engine import resolve_device

        return cls(labelled, every=run.knn_every, image_size=run.knn_image_size or default_size,
                   device=resolve_device(run.device), announce=announce)  # fmt: skip

    def __call__(self, step: int, method) -> dict[str, Any]:
        import tempfile

        import torch

        from wtours.trainers.evaluation.features import load_encoder
        from wtours.trainers.evaluation.knn import evaluate_knn
        from wtours.trainers.training.backbones import export_encoder

        with tempfile.TemporaryDirectory(prefix="wtours-knn-") as folder:  # no copy of the encoder left behind
            path = Path(folder) / "encoder.safetensors"
            export_encoder(method.encoder(), method.encoder_spec(), path)
            encoder = load_encoder(None, path)
        with torch.random.fork_rng(devices=[]), torch.inference_mode():
            result = evaluate_knn(
                encoder, self.labelled, ks=KS, temperature=TEMPERATURE, image_size=self.image_size, batch_size=100,
                device=self.device, num_workers=0,
            )  # fmt: skip
        top1 = {str(k): value for k, value in result.top1.items()}
        if self.announce:
            console.print(f"step {step}: k-NN top-1 {top1[str(KS[-1])]:.1f} % (k={KS[-1]})", highlight=False)
        return {"knn_top1": top1}
