"""Write a run's report directory."""

from __future__ import annotations

import json
import os

import yaml

from ..metrics import match, psnr
from .figures import save_curve, save_progress_gif, save_reconstruction_png


def write_report(out: str, result) -> dict[str, str]:  # noqa: ANN001 - RunResult (avoid import cycle)
    """Write metrics.json, config.yaml, reconstruction.png, progress.gif and curve.png into `out`.
    Metrics and config go first so nothing computed is lost if a figure fails."""
    os.makedirs(out, exist_ok=True)
    m, rec, truth = result.metrics, result.reconstruction, result.images
    paths = {name: os.path.join(out, name) for name in
             ("metrics.json", "config.yaml", "reconstruction.png", "progress.gif", "curve.png")}  # fmt: skip
    with open(paths["metrics.json"], "w") as fh:
        json.dump(m, fh, indent=2)
    with open(paths["config.yaml"], "w") as fh:
        yaml.safe_dump(result.config.to_dict(), fh, sort_keys=False)
    order = m["assignment"]
    matched = rec.images[order]
    title = f"{m['attack']} on {m['model']}, batch {m['batch_size']}: {m['psnr']:.2f} dB mean PSNR"
    save_reconstruction_png(paths["reconstruction.png"], truth, matched, m["psnr_per_image"], title)
    save_progress_gif(paths["progress.gif"], truth, rec.snapshots, order)
    points = []
    for it, images in rec.snapshots:
        o = match(images, truth)
        points.append((it, float(psnr(images[o], truth).mean())))
    save_curve(paths["curve.png"], rec.loss_history, points, title)
    return paths
