"""Auxiliary-data distribution shift: a generative prior trained on one distribution, attacked
images from it and from others.

A DCGAN is trained on `fashion-mnist@train`; an untrained LeNet (PyTorch's init, model seed 0)
on 1×28×28 images leaks the update of private batches drawn from `fashion-mnist@test` (in
distribution) and from three other sets converted to 1×28×28 (`digits@test`, `lfw@test`,
`sample@test`: out of distribution). Every attack — pixel IG, the generative attacks (gias, gifd,
ggl with the trained generator; dip with none) and the robust candidates — runs on the same
observations (batch size 1, and 4 with distinct or equal labels), each (set, batch, attack) one
cell of a resumable sweep. Choices inside attacks are blind (matching loss); PSNR only reports.

    results = run_aux_distribution("runs/aux", quick=True)
    # or: gradinv experiment aux-distribution --quick --out runs/aux
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from ..data import load_dataset
from ..errors import GradinvError
from ..sweep import Grid, run_sweep

IN_DISTRIBUTION = "fashion-mnist@test"
SETS = (IN_DISTRIBUTION, "digits@test", "lfw@test", "sample@test")
# every auxiliary train split, 1×28×28, each repeated to about 60 000 images so that the small
# sets are not drowned by Fashion-MNIST (digits 1 438, lfw 160, sample 510 training images)
MIXTURE = "mixture:fashion-mnist@train+digits@train*42+lfw@train*375+sample@train*118"
SHAPE = {"channels": 1, "image_size": 28}
# the attack named up front for claims (i) and (ii): GIAS (the post's method)
CLAIMED = "gias"


@dataclass(frozen=True)
class Recipe:
    """A generator, trained (once, cached) by `gradinv.generative.cached_generator`."""

    data: str
    epochs: int
    max_images: int = 0
    seed: int = 0

    def directory(self) -> str:
        from ..generative import cached_generator

        extra = {"max_images": self.max_images} if self.max_images else {}
        return cached_generator(self.data, SHAPE["channels"], SHAPE["image_size"], self.epochs,
                                seed=self.seed, **extra)  # fmt: skip


@dataclass(frozen=True)
class AttackSpec:
    """One row of the grids: an attack, its options, and which generator it searches."""

    label: str
    name: str
    options: dict[str, Any] = field(default_factory=dict)
    generator: str = ""  # "", "aux" (the Fashion-MNIST generator) or "mixture"
    # optional pixel refinement in the same cell: `ig` started from this attack's reconstruction,
    # exactly what `ig --attack-opt init=NAME --attack-opt init_options=...` computes, without
    # running the generative attack twice; {"label": ..., "options": {...}} or {}
    refine: dict[str, Any] = field(default_factory=dict)


@dataclass
class AuxSettings:
    """The experiment's design; `quick_settings()` and `full_settings()` are the two presets."""

    aux: Recipe = field(default_factory=lambda: Recipe("fashion-mnist@train", 5))
    mixture: Recipe = field(default_factory=lambda: Recipe(MIXTURE, 1))
    sets: tuple[str, ...] = SETS
    seeds_b1: int = 16  # batches of one image
    seeds_b4: int = 4  # batches of four, per composition
    attacks: tuple[AttackSpec, ...] = ()
    # the robust prior: of pixel IG and GIAS-then-IG (GIAS's image refined in pixel space, so out
    # of distribution the pixels can leave the generator's range), the one whose reconstruction
    # has the lower matching loss — `auto`'s blind choice, made from the two rows' cells
    hybrid: tuple[str, ...] = ("ig", "gias+ig")
    robust: str = "hybrid"
    model_seed: int = 0
    dtype: str = "float32"
    first_seed: int = 0  # private batches use seeds first_seed, first_seed + 1, ...
    preset: str = "custom"  # the name `gradinv experiment aux-distribution --preset` knows it by


def default_attacks(iterations: dict[str, dict[str, Any]] | None = None) -> tuple[AttackSpec, ...]:
    """Every attack at its library defaults (`iterations` overrides budgets per label)."""
    budget = iterations or {}
    specs = [
        AttackSpec("ig", "ig"),
        AttackSpec("gias", "gias", generator="aux", refine={"label": "gias+ig", "options": {}}),
        AttackSpec("gifd", "gifd", generator="aux"),
        AttackSpec("ggl", "ggl", generator="aux"),
        AttackSpec("dip", "dip"),
        AttackSpec("gias-mixture", "gias", generator="mixture"),
    ]
    specs += optional_attacks()
    out = []
    for s in specs:
        s = replace(s, options={**s.options, **budget.get(s.label, {})})
        if s.refine:
            label = s.refine["label"]
            s = replace(s, refine={"label": label, "options": budget.get(label, {})})
        out.append(s)
    return tuple(out)


def optional_attacks() -> list[AttackSpec]:
    """Hook for attacks other branches add: `learned` (an inverter trained on the auxiliary
    train split) joins the grid once it is registered."""
    from ..attacks import ATTACKS

    if "learned" not in ATTACKS:
        return []
    options = ATTACKS.get("learned").options()
    data = {k: "fashion-mnist@train" for k in ("data", "aux_data") if k in options}
    return [AttackSpec("learned", "learned", data)]


def full_settings() -> AuxSettings:
    """The design of the issue: 16 images per cell, every attack at its library defaults."""
    return AuxSettings(attacks=default_attacks(), preset="full")


# short budgets shared by the quick and reduced presets (iterations per attack label)
SHORT = {
    "ig": {"iterations": 200},
    "gias": {"iterations": 100, "weight_iterations": 100, "restarts": 2},
    "gias+ig": {"iterations": 200},
    "gifd": {"iterations": 100, "restarts": 2, "feature_iterations": 30},
    "ggl": {"generations": 20, "population": 16},
    "dip": {"iterations": 200},
    "gias-mixture": {"iterations": 100, "weight_iterations": 100, "restarts": 2},
}


def reduced_settings() -> AuxSettings:
    """Every set and attack of the full design at the quick budgets and 8 images per cell, with
    the default generator (5 epochs on all of fashion-mnist@train) and a small mixture one: what a
    shared 2-core machine finishes in about an hour."""
    return AuxSettings(
        mixture=Recipe(MIXTURE, 1, max_images=24_000),
        seeds_b1=8,
        seeds_b4=2,
        attacks=default_attacks(SHORT),
        preset="reduced",
    )


def quick_settings() -> AuxSettings:
    """A few minutes on 2 cores: a small generator (trained once, cached), short attacks."""
    attacks = tuple(s for s in default_attacks(SHORT) if s.label in ("ig", "gias"))
    return AuxSettings(
        aux=Recipe("fashion-mnist@train", 2, max_images=12_000),
        sets=(IN_DISTRIBUTION, "digits@test"),
        seeds_b1=4,
        seeds_b4=1,
        attacks=attacks,
        preset="quick",
    )


def cases(settings: AuxSettings) -> list[dict[str, Any]]:
    """(set, batch size, composition, seed) of every private batch. A set with fewer classes than
    the batch (lfw: 2) gets the most distinct labels it allows (`repeat:2`), recorded as such."""
    out = []
    for spec in settings.sets:
        classes = load_dataset(spec).num_classes
        groups = [("b1", 1, "unique", settings.seeds_b1)]
        unique = "unique" if classes >= 4 else f"repeat:{-(-4 // classes)}"
        groups += [
            ("b4-unique", 4, unique, settings.seeds_b4),
            ("b4-same", 4, "same", settings.seeds_b4),
        ]
        for case, b, comp, seeds in groups:
            for seed in range(settings.first_seed, settings.first_seed + seeds):
                out.append({"set": spec, "case": case, "batch_size": b, "composition": comp,
                            "seed": seed})  # fmt: skip
    return out


def cell(config: dict[str, Any], out: str) -> dict[str, Any]:
    """One attack on one private batch (a sweep cell): runs it (and its pixel refinement, if the
    spec has one), saves `reconstruction.safetensors` (truth, each reconstruction in the truth's
    order, labels) and returns {"results": {label: scores}} plus the main attack's scores."""
    from safetensors.torch import save_file

    from ..pipeline import RunConfig, run

    case, spec = config["case"], config["attack"]
    options = dict(spec["options"])
    if spec["generator"]:
        options["generator"] = Recipe(**config["generators"][spec["generator"]]).directory()
    run_config = RunConfig(
        attack=spec["name"], model="lenet", model_seed=config["model_seed"], data=case["set"],
        batch_size=case["batch_size"], composition=case["composition"], labels="known",
        seed=case["seed"], dtype=config["dtype"], threads=config["threads"],
        attack_options=options, **SHAPE,
    )  # fmt: skip
    result = run(run_config, progress=False)
    results = {spec["label"]: _scores(result.observation, result.images, result.reconstruction,
                                      result.metrics["time_s"])}  # fmt: skip
    tensors = {"truth": result.images, "labels": result.labels,
               spec["label"]: _ordered(result.reconstruction.images, result.images)}  # fmt: skip
    if spec["refine"]:
        label = spec["refine"]["label"]
        start = time.perf_counter()
        refined = _refine(result, spec["refine"]["options"])
        results[label] = _scores(result.observation, result.images, refined,
                                 result.metrics["time_s"] + time.perf_counter() - start)  # fmt: skip
        tensors[label] = _ordered(refined.images, result.images)
    save_file({k: v.contiguous() for k, v in tensors.items()},
              os.path.join(out, "reconstruction.safetensors"))  # fmt: skip
    main = results[spec["label"]]
    return {"psnr": main["psnr"], "ssim": main["ssim"], "time_s": main["time_s"],
            "labels": sorted(int(v) for v in result.labels), "results": results}  # fmt: skip


def _refine(result: Any, options: dict[str, Any]) -> Any:
    """`ig` from the reconstruction's images (its `init` mechanism, with the start given)."""
    from ..attacks import make_attack

    seed = result.config.seed
    attack = make_attack("ig", progress=False, seed=seed, **options)
    obs = result.observation
    problem = attack.build_problem(obs)
    problem.start = obs.normalize(result.reconstruction.images.to(obs.device, obs.dtype))
    rec = attack.reconstruction(problem, attack.solve(problem))
    if rec.info.get("interrupted"):
        raise KeyboardInterrupt
    return rec


def _ordered(images: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    from ..metrics import match

    return images[torch.as_tensor(match(images, truth))].float()


def _scores(obs: Any, truth: torch.Tensor, rec: Any, seconds: float) -> dict[str, Any]:
    """Per-image PSNR/SSIM (truth order) and the cosine matching loss in float64 (the server's
    yardstick: what the hybrid compares)."""
    from ..attacks.engine import matching_loss
    from ..metrics import evaluate

    if rec.info.get("interrupted"):
        raise KeyboardInterrupt  # a half-finished attack is not this cell's result
    e = evaluate(rec.images, truth)
    keep = ("stage", "stage_losses", "chosen_stage", "final_loss")
    return {"psnr": e["psnr"], "ssim": e["ssim"], "psnr_per_image": e["psnr_per_image"],
            "ssim_per_image": e["ssim_per_image"],
            "matching_loss": matching_loss(obs, rec.images, obs.labels),
            "time_s": round(seconds, 2), "info": {k: rec.info[k] for k in keep if k in rec.info}}  # fmt: skip


def grid(settings: AuxSettings, threads: int = 1) -> Grid:
    base = {"model_seed": settings.model_seed, "dtype": settings.dtype, "threads": threads,
            "generators": {"aux": asdict(settings.aux), "mixture": asdict(settings.mixture)}}  # fmt: skip
    attacks = [asdict(a) for a in settings.attacks]
    return Grid(base, {"case": cases(settings), "attack": attacks}, settings=None)


OUTPUTS = ("sweep", "grids", "report.md", "results.json", "claims.json")


def prepare_output(out: str, overwrite: bool, resume: bool) -> None:
    """Refuse to mix runs: an existing experiment needs --resume (continue) or --overwrite."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise GradinvError(f"cannot write to {out!r}: it is a file, not a directory")
    present = [n for n in OUTPUTS if os.path.exists(os.path.join(out, n))]
    if present and overwrite:
        for name in present:
            path = os.path.join(out, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    elif present and not resume:
        raise GradinvError(
            f"{out!r} already holds this experiment ({present[0]}); pass --resume to continue it "
            "or --overwrite to start again"
        )
    os.makedirs(out, exist_ok=True)


PRESETS = {"quick": quick_settings, "reduced": reduced_settings, "full": full_settings}


def run_aux_distribution(
    out: str,
    quick: bool = False,
    engine: str = "local",
    workers: int = 1,
    resume: bool = False,
    overwrite: bool = False,
    settings: AuxSettings | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train (or reuse) the generators, run the grid through the sweep runner, and write
    report.md, results.json, claims.json and grids/ into `out`."""
    from .aux_report import write_outputs

    s = settings or (quick_settings() if quick else full_settings())
    if not s.attacks or "ig" not in {a.label for a in s.attacks}:
        raise GradinvError("the aux-distribution settings need attacks, pixel IG ('ig') among them")
    if resume and overwrite:
        raise GradinvError("--resume continues a run, --overwrite discards it: choose one")
    prepare_output(out, overwrite, resume)
    start = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small models: one thread is fastest and fair to neighbours
    try:
        needed = {a.generator for a in s.attacks if a.generator}
        for key in sorted(needed):  # trained here once, so workers never wait on each other
            if log:
                log(f"generator {key}: {getattr(s, key).data} ({getattr(s, key).epochs} epochs)")
            getattr(s, key).directory()
        trained = time.perf_counter() - start
        sweep = run_sweep(grid(s), os.path.join(out, "sweep"), engine=engine, workers=workers,
                          resume=resume, cell_fn=cell, check_fn=None, progress=progress,
                          metrics=())  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    seconds = {"generators_s": round(trained, 1), "total_s": round(time.perf_counter() - start, 1)}
    return write_outputs(out, s, sweep, quick, seconds)
