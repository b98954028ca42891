"""Write a run's report directory."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator

import yaml

from ..errors import GradinvError
from ..metrics import match, psnr
from .figures import save_curve, save_images_png, save_progress_gif, save_reconstruction_png


@contextlib.contextmanager
def output_directory(
    out: str, overwrite: bool = False, marker: str = "metrics.json"
) -> Iterator[str]:
    """Check `out` before any work: writable, and not holding an earlier run (`marker`) unless
    `overwrite`. A directory this call created is removed again if the work fails and leaves it
    empty, so failed runs leave nothing behind."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise GradinvError(f"cannot write to {out!r}: it is a file, not a directory")
    if os.path.isfile(os.path.join(out, marker)) and not overwrite:
        raise GradinvError(
            f"{out!r} already holds a report ({marker}); pass --overwrite or choose another --out"
        )
    created = not os.path.exists(out)
    try:
        os.makedirs(out, exist_ok=True)
        if not os.access(out, os.W_OK | os.X_OK):
            raise PermissionError("not writable")
    except OSError as exc:
        raise GradinvError(f"cannot write to {out!r}: {exc.strerror or exc}") from None
    try:
        yield out
    except BaseException:
        if created and os.path.isdir(out) and not os.listdir(out):
            os.rmdir(out)
        raise


def check_output_file(path: str) -> None:
    """Fail before any work if `path` cannot be written as a file."""
    if os.path.isdir(path):
        raise GradinvError(f"cannot write {path!r}: it is a directory; give a file name")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise GradinvError(f"cannot write {path!r}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise GradinvError(f"cannot write {path!r}: permission denied")


def write_report(out: str, result) -> dict[str, str]:  # noqa: ANN001 - RunResult (avoid import cycle)
    """Write metrics.json, config.yaml and reconstruction.png into `out`, plus progress.gif and
    curve.png when the attack iterated. Metrics and config go first so nothing computed is lost if
    a figure fails. Without ground truth (a saved observation attacked alone) the figures show
    the reconstruction only."""
    os.makedirs(out, exist_ok=True)
    m, rec, truth = result.metrics, result.reconstruction, result.images
    names = ["metrics.json", "config.yaml", "reconstruction.png"]
    if rec.loss_history:
        names += ["progress.gif", "curve.png"]
    paths = {name: os.path.join(out, name) for name in names}
    with open(paths["metrics.json"], "w") as fh:
        json.dump(m, fh, indent=2)
    with open(paths["config.yaml"], "w") as fh:
        yaml.safe_dump(result.config.to_dict(), fh, sort_keys=False)
    if truth is None:
        title = f"{m['attack']}: reconstruction (no ground truth given)"
        save_images_png(paths["reconstruction.png"], rec.images, title)
        if rec.loss_history:
            save_progress_gif(paths["progress.gif"], rec.images, rec.snapshots, None, False)
            save_curve(paths["curve.png"], rec.loss_history, [], title)
        return paths
    order = m["assignment"]
    matched = rec.images[order]
    title = f"{m['attack']} on {m['model']}, batch {m['batch_size']}: {m['psnr']:.2f} dB mean PSNR"
    save_reconstruction_png(paths["reconstruction.png"], truth, matched, m["psnr_per_image"], title)
    if rec.loss_history:
        save_progress_gif(paths["progress.gif"], truth, rec.snapshots, order)
        points = []
        for it, images in rec.snapshots:
            o = match(images, truth)
            points.append((it, float(psnr(images[o], truth).mean())))
        save_curve(paths["curve.png"], rec.loss_history, points, title)
    return paths


def attack_report(
    out: str,
    observation,  # noqa: ANN001 - gradinv.fl.Observation (avoid an import cycle)
    attack: str = "auto",
    images=None,  # noqa: ANN001 - the private batch in [0,1], for scoring only
    labels=None,  # noqa: ANN001
    *,
    seed: int = 0,
    progress: bool = False,
    **options,  # noqa: ANN003 - the attack's hyper-parameters
) -> dict:
    """One call from any observation (any nn.Module: `gradinv.observe(model, x, y)`, a saved
    or Flower-captured one) to the report directory `gradinv attack` writes: run `attack` with
    `options`, score it when the private `images` (and `labels`) are given, write metrics.json,
    config.yaml, reconstruction.png (+ progress.gif, curve.png) into `out`; returns the metrics.

        obs = observe(model, images, labels)                    # labels hidden from the server
        m = attack_report("runs/mine", obs, "ig", images, labels, iterations=500)
        print(m["psnr"], m["label_accuracy"])
    """
    import time

    from ..attacks import make_attack
    from ..pipeline import RunConfig, RunResult, score, unscored

    if images is not None and labels is None:
        raise GradinvError("give the private labels with the images (scoring needs both)")
    spec = observation.model_spec or {}
    config = RunConfig(
        attack=attack, model=str(spec.get("name") or type(observation.model).__name__),
        data="(given)", batch_size=int(images.shape[0]) if images is not None else 1,
        labels="known" if observation.labels is not None else "auto", seed=seed,
        attack_options=dict(options),
    )  # fmt: skip
    rec_attack = make_attack(attack, progress=progress, seed=seed, **options)
    start = time.perf_counter()
    rec = rec_attack.reconstruct(observation)
    elapsed = time.perf_counter() - start
    if images is None:
        metrics = unscored(config, rec, observation, elapsed)
    else:
        metrics = score(config, rec, images.detach().float().cpu(), labels.cpu(), elapsed)
    result = RunResult(config, metrics, rec, None if images is None else images.float().cpu(),
                       labels, observation)  # fmt: skip
    write_report(out, result)
    return metrics
