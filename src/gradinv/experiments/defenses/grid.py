"""The defense experiment's grid: which defense settings, attacks and seeds, as a flat list of
cells (JSON-able config dicts) that `cell.cell` runs one at a time, in any process."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

NONE = "none"  # the undefended round
GENERATIVE = ("gias", "ggl")  # attacks searching a generator trained on the @train split


def _noise_std(variance: float) -> str:
    """Zhu et al. state noise by its variance; the defenses take a std (Gaussian) or b (Laplace)."""
    return f"{math.sqrt(variance):.6g}"


def _laplace_scale(variance: float) -> str:
    return f"{math.sqrt(variance / 2):.6g}"  # Laplace(0, b) has variance 2b²


@dataclass(frozen=True)
class Block:
    """One attacked setting: a model and batch, the defense specs tried on it, and which attacks
    run on which of them: `plain[attack]` (None: every defense of the block) and, for the
    defense-aware variants, `aware[attack]` (only defenses with a `simulate`, `informative` or
    `layers` hook: for the others defense-aware is the plain attack, bit for bit)."""

    name: str
    model: str
    model_options: dict[str, Any]
    batch_size: int
    defenses: tuple[str, ...]
    plain: dict[str, tuple[str, ...] | None]
    aware: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass
class DefenseSettings:
    """Budgets and grid of the experiment; `quick_settings()` / `full_settings()` are the presets."""

    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    data: str = "fashion-mnist@test"  # private batches; the attacker's priors use @train
    channels: int = 1
    image_size: int = 28
    blocks: tuple[Block, ...] = ()
    # per-attack options (iterations etc.); `generator` is filled in from the recipe
    attack_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    # gradinv.generative.cached_generator recipe (trained on the @train split), None: no
    # generative attacks
    generator: dict[str, Any] | None = None
    # FedAvg utility (gradinv.defenses.utility.fedavg_accuracy) per defense spec of the first block
    utility: dict[str, Any] = field(default_factory=dict)
    utility_seeds: tuple[int, ...] = (0, 1, 2)
    utility_defenses: tuple[str, ...] | None = None  # None: every defense of the first block
    # server step for defenses that discard the update's scale (sign)
    server_lr: dict[str, float] = field(default_factory=lambda: {"sign": 1e-2})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


LENET_UNIFORM = {"init": "uniform"}  # DLG's LeNet: every weight U(-0.5, 0.5), as in Zhu et al.

PRUNE = tuple(f"prune:ratio={r}" for r in (0.2, 0.3, 0.5, 0.7, 0.9, 0.99))
NOISE = tuple(f"noise:std={_noise_std(v)}" for v in (1e-4, 1e-3, 1e-2, 1e-1))
LAPLACE = tuple(f"laplace:scale={_laplace_scale(v)}" for v in (1e-4, 1e-2))
DPSGD = tuple(f"dpsgd:noise={s},clip=1" for s in (0.5, 1, 2))
P90, P99, SOTERIA = "prune:ratio=0.9", "prune:ratio=0.99", "soteria:ratio=0.8"
OTHERS = ("sign", "quantize:bits=2", "clip:max_norm=1", SOTERIA, "precode")


def full_settings() -> DefenseSettings:
    """The full grid: 21 defense settings on DLG's LeNet (B = 1) and 7 on mlp4, 5 seeds. DLG runs
    on every setting; IG and the generative attacks on the settings the claims and the
    defense-aware comparison need (they cost more, and IG is weak on this model)."""
    key = (NONE, P90, P99, NOISE[2], "sign", SOTERIA, DPSGD[1], DPSGD[2])
    lenet = Block(
        "lenet", "lenet", LENET_UNIFORM, 1,
        (NONE, *PRUNE, *NOISE, *LAPLACE, *OTHERS, *DPSGD),
        plain={"dlg": None, "ig": (*key, "precode"), "gias": key, "ggl": key},
        aware={"dlg": (PRUNE[2], P90, P99, "sign", "quantize:bits=2", "clip:max_norm=1",
                       SOTERIA, "precode"),
               "ig": (P90, P99, "sign", SOTERIA, "precode"),
               "gias": (P90, P99, "sign", SOTERIA), "ggl": (P90, P99)},
    )  # fmt: skip
    mlp = Block("mlp4", "mlp4", {}, 1,
                (NONE, PRUNE[2], P90, NOISE[1], NOISE[2], "sign", DPSGD[1]), {"bias": None})  # fmt: skip
    return DefenseSettings(
        blocks=(lenet, mlp),
        attack_options={
            "dlg": {"iterations": 50},
            "ig": {"iterations": 600},
            "gias": {"iterations": 300, "restarts": 2, "weight_iterations": 200},
            "ggl": {"generations": 150, "population": 24},
        },
        generator={"data_spec": "fashion-mnist@train", "channels": 1, "image_size": 28,
                   "epochs": 5, "seed": 0},  # fmt: skip
        utility={"rounds": 30, "clients": 4, "samples_per_client": 800, "test_size": 2000},
        # Soteria's per-feature backward over 800 images per client and round is too costly
        utility_defenses=(NONE, PRUNE[2], P90, P99, NOISE[2], NOISE[3], "sign",
                          "quantize:bits=2", "precode", DPSGD[1], DPSGD[2]),
    )  # fmt: skip


def quick_settings() -> DefenseSettings:
    """`--quick`: the claims' key cells at small budgets, two seeds (a few minutes on 2 cores)."""
    lenet = Block(
        "lenet", "lenet", LENET_UNIFORM, 1,
        (NONE, "prune:ratio=0.3", P90, NOISE[2], DPSGD[1]),
        plain={"dlg": None, "ggl": (NONE, DPSGD[1])},
        aware={"dlg": (P90,)},
    )  # fmt: skip
    mlp = Block("mlp4", "mlp4", {"width": 200}, 1, (NONE, P90), {"bias": None})
    return DefenseSettings(
        seeds=(0, 1),
        blocks=(lenet, mlp),
        attack_options={"dlg": {"iterations": 10}, "ggl": {"generations": 20, "population": 12}},
        generator={
            "data_spec": "fashion-mnist@train",
            "channels": 1,
            "image_size": 28,
            "epochs": 1,
            "seed": 0,
            "max_images": 2000,
        },
        utility={"rounds": 4, "clients": 2, "samples_per_client": 200, "test_size": 500},
        utility_seeds=(0,),
    )


def claims_settings() -> DefenseSettings:
    """`--grid claims`: the settings the claims and the target need, 5 seeds, at budgets the
    shared 2-core machine affords (DLG 20 L-BFGS steps, IG 300 steps, GGL 60 generations of 16 on
    the full grid's generator; FedAvg utility at 30 rounds of 4 clients x 400 images, 2 seeds)."""
    aware = (PRUNE[2], PRUNE[3], P90)
    key = (NONE, P90, DPSGD[1], DPSGD[2])
    lenet = Block(
        "lenet", "lenet", LENET_UNIFORM, 1,
        (NONE, *PRUNE[:5], *NOISE, *LAPLACE, *DPSGD),
        plain={"dlg": None, "ig": key, "ggl": key},
        aware={"dlg": aware, "ig": (P90,), "ggl": (P90,)},
    )  # fmt: skip
    mlp = Block("mlp4", "mlp4", {}, 1, (NONE, P90, NOISE[2], DPSGD[1]), {"bias": None})
    full = full_settings()
    return DefenseSettings(
        blocks=(lenet, mlp),
        attack_options={
            "dlg": {"iterations": 20},
            "ig": {"iterations": 300},
            "ggl": {"generations": 60, "population": 16},
        },
        generator=full.generator,
        utility={"rounds": 30, "clients": 4, "samples_per_client": 400, "test_size": 2000},
        utility_seeds=(0, 1),
        utility_defenses=(NONE, PRUNE[1], P90, NOISE[2], NOISE[3], DPSGD[1], DPSGD[2]),
    )


PRESETS = {"quick": quick_settings, "claims": claims_settings, "full": full_settings}


def cells(s: DefenseSettings) -> list[dict[str, Any]]:
    """Every cell of the experiment: attack runs (block × defense × attack × aware × seed) and
    FedAvg utility runs (defense × seed, for the first block's model)."""
    out: list[dict[str, Any]] = []
    first = s.blocks[0]
    utility = [d for d in (s.utility_defenses or first.defenses)] if s.utility else []
    # seed-major, utility runs with their seed: a run stopped early (and resumed later) already
    # covers every setting
    for seed in dict.fromkeys((*s.seeds, *s.utility_seeds)):
        for block in s.blocks if seed in s.seeds else ():
            for defense in block.defenses:
                for attack, on in block.plain.items():
                    if attack in GENERATIVE and s.generator is None:
                        continue
                    variants = [False] if on is None or defense in on else []
                    variants += [True] if defense in block.aware.get(attack, ()) else []
                    for aware in variants:
                        out.append(_attack_cell(s, block, defense, attack, aware, seed))
        for defense in utility if seed in s.utility_seeds else ():
            name = defense.split(":")[0]
            out.append({
                "kind": "utility", "block": first.name, "defense": defense, "seed": seed,
                "model": first.model, "model_options": dict(first.model_options),
                "data": s.data.split("@")[0], "image_size": s.image_size,
                "server_lr": s.server_lr.get(name, 1.0), **s.utility,
            })  # fmt: skip
    return out


def _attack_cell(s: DefenseSettings, block: Block, defense: str, attack: str, aware: bool,
                 seed: int) -> dict[str, Any]:  # fmt: skip
    options = dict(s.attack_options.get(attack, {}))
    generator = s.generator if attack in GENERATIVE else None
    return {
        "kind": "attack", "block": block.name, "model": block.model,
        "model_options": dict(block.model_options), "batch_size": block.batch_size,
        "data": s.data, "channels": s.channels, "image_size": s.image_size,
        "defense": defense, "attack": attack, "aware": aware, "seed": seed,
        "attack_options": options, "generator": generator,
    }  # fmt: skip
