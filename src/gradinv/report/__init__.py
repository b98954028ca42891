"""Reports a person wants to look at: metrics.json, reconstruction.png, progress.gif, curve.png,
config.yaml; and the output checks every command runs before any work."""

from .figures import grid_image, save_curve, save_progress_gif, save_reconstruction_png
from .writer import attack_report, check_output_file, output_directory, write_report

__all__ = [
    "attack_report",
    "grid_image",
    "save_curve",
    "save_progress_gif",
    "check_output_file",
    "output_directory",
    "save_reconstruction_png",
    "write_report",
]
