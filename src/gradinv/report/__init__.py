"""Reports a person wants to look at: metrics.json, reconstruction.png, progress.gif, curve.png,
config.yaml."""

from .figures import grid_image, save_curve, save_progress_gif, save_reconstruction_png
from .writer import write_report

__all__ = [
    "grid_image",
    "save_curve",
    "save_progress_gif",
    "save_reconstruction_png",
    "write_report",
]
