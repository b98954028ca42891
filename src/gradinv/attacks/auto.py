"""`auto`: the attack gradinv runs when the user names none. It decides from the observation
alone, as a server would: the closed forms that apply are tried first and returned when they
certify an exact answer; otherwise the optimisation candidates run and the one whose
reconstruction best explains the observed update (lowest cosine matching loss) is returned."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import GradinvError
from ..fl import Observation
from ..options import option
from .base import ATTACKS, Attack, Reconstruction, make_attack
from .engine import UpdateSimulator, matching_loss
from .engine.problem import defense_model

CLOSED_FORMS = ("bias", "spear", "rgap")


def is_exact(rec: Reconstruction) -> bool:
    """A closed form vouches for its whole answer: every sample certified, or `exact`."""
    info = rec.info
    if info.get("exact") is True:
        return True
    certified = info.get("certified")
    return bool(certified) and all(certified) and info.get("exact") is not False


@ATTACKS.register(
    "auto", "picks for the observation: a closed form where it is exact, else the best of the "
    "optimisation attacks by matching loss",
)  # fmt: skip
@dataclass
class Auto(Attack):
    """Run the candidates that apply to the observation and keep the one whose reconstruction
    explains the observed update best — chosen by the matching loss only, never by the private
    images. Closed forms go first; one that certifies an exact answer ends the search.

    Example::

        obs = observe(model, images, labels, share_labels=True)
        rec = Auto().reconstruct(obs)
        print(rec.info["chosen"], rec.info["candidates"])
    """

    name = "auto"
    contract_options = {"candidates": ("rgap", "dlg", "ig"), "iterations": 3}
    candidates: tuple = option(
        ("bias", "spear", "rgap", "dlg", "ig"),
        "attacks tried in order (closed forms end the search when exact)",
    )
    budget: float = option(
        1.0, "fraction of each optimisation attack's default iterations", low=0, low_open=True,
        high=10,
    )  # fmt: skip
    iterations: int = option(
        0, "if > 0, the iterations of every optimisation candidate (0: its default × budget)",
        low=0,
    )  # fmt: skip
    label_strategy: str = option("auto", "label strategy when the labels are not observed")
    defense_aware: bool = option(
        False, "pass defense_aware=true to the candidates that have it (optimisation attacks: "
        "re-apply the recorded defenses to the simulated update)",
    )  # fmt: skip
    generator: str = option(
        "", "generator directory given to the candidates that search one (gias, gifd, ggl, dip)",
    )  # fmt: skip

    def check(self) -> None:
        super().check()
        if not self.candidates:
            raise GradinvError("auto: candidates must name at least one attack")
        for name in self.candidates:
            ATTACKS.get(name)
            if name == self.name:
                raise GradinvError("auto: cannot be its own candidate")

    def _make(self, name: str) -> Attack:
        options: dict[str, Any] = {"seed": self.seed, "progress": self.progress}
        defaults = ATTACKS.get(name).options()
        if "iterations" in defaults:
            options["iterations"] = self.iterations or max(
                1, round(defaults["iterations"] * self.budget)
            )
        if "label_strategy" in defaults:
            options["label_strategy"] = self.label_strategy
        if self.defense_aware and "defense_aware" in defaults:
            options["defense_aware"] = True
        if self.generator and "generator" in defaults:
            options["generator"] = self.generator
        return make_attack(name, **options)

    def reconstruct(self, observation: Observation) -> Reconstruction:
        self.check()
        observation.validate()
        tried: dict[str, Any] = {}
        best: tuple[float, str, Reconstruction] | None = None
        labels = observation.labels
        simulator = None
        if self.defense_aware and observation.defenses:  # judge candidates as they matched
            layers, transform, masks = defense_model(observation)
            simulator = UpdateSimulator(observation, layers=layers, transform=transform,
                                        masks=masks)  # fmt: skip
        for name in self.candidates:
            start = time.perf_counter()
            try:
                rec = self._make(name).reconstruct(observation)
            except GradinvError as exc:  # does not apply to this observation
                tried[name] = {"applies": False, "reason": str(exc)}
                continue
            loss = matching_loss(observation, rec.images, rec.labels if labels is None else labels,
                                 simulator=simulator)  # fmt: skip
            exact = name in CLOSED_FORMS and is_exact(rec)
            tried[name] = {"applies": True, "matching_loss": loss, "exact": exact,
                           "interrupted": bool(rec.info.get("interrupted")),
                           "seconds": round(time.perf_counter() - start, 2)}  # fmt: skip
            if best is None or loss < best[0] or exact:
                best = (loss, name, rec)
            if exact or rec.info.get("interrupted"):
                break
        if best is None:
            raise GradinvError(
                "auto: no candidate attack applies to this observation: "
                + "; ".join(f"{k}: {v['reason']}" for k, v in tried.items())
            )
        loss, name, rec = best
        info = {**rec.info, "chosen": name, "chosen_matching_loss": loss, "candidates": tried,
                "interrupted": any(r.get("interrupted") for r in tried.values())}  # fmt: skip
        return Reconstruction(
            images=rec.images.to(torch.float32) if rec.images.dtype != torch.float32 else rec.images,
            labels=rec.labels, loss_history=rec.loss_history, snapshots=rec.snapshots, info=info,
        )  # fmt: skip
