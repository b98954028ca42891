"""Learned inversion (Wu, Chen, Ding, Li & Zhang, "Learning to Invert: Simple Adaptive Attacks
for Gradient Inversion in Federated Learning", UAI 2023): a network trained on (update, images)
pairs computed through the shared model maps an update to the images in one forward pass. The
training lives in gradinv.learned (`gradinv train-inverter`); this attack only applies it."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import GradinvError
from ..fl import Observation
from ..labels import estimate_batch_size
from ..learned import Inverter, fingerprint, flatten, load_inverter, trainable_names
from ..options import option
from .base import ATTACKS, Attack, Reconstruction

COUNTS = ("auto", "analytic", "network")


def check_compatible(record: dict[str, Any], obs: Observation, where: str) -> None:
    """An inverter inverts the updates of one deployment only: the same architecture, the same
    weights (hash), input shape, normalisation and protocol. Anything else is one line."""
    model = record["model"]
    shape = tuple(model["input_shape"])
    if tuple(obs.input_shape) != shape:
        raise GradinvError(
            f"the inverter {where} takes {shape} inputs, the observation {tuple(obs.input_shape)}"
        )
    spec = obs.model_spec
    if (
        spec is None
        or spec.get("name") != model["spec"]["name"]
        or dict(spec.get("options", {})) != dict(model["spec"].get("options", {}))
    ):
        raise GradinvError(
            f"the inverter {where} was trained for model {model['spec']}, the observation "
            f"comes from {spec or 'a custom model'}"
        )
    if fingerprint(obs.parameters) != model["parameters_sha256"]:
        raise GradinvError(
            f"the observation's model parameters differ from those the inverter {where} was "
            f"trained for (model seed {model['seed']}, parameter hash "
            f"{model['parameters_sha256'][:12]}): train one for these weights"
        )
    norm = record["normalization"]
    same = all(math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-7) for a, b in
               zip([*obs.mean, *obs.std], [*norm["mean"], *norm["std"]], strict=True))  # fmt: skip
    if not same:
        raise GradinvError(
            f"the observation's normalisation mean {list(obs.mean)} std {list(obs.std)} differs "
            f"from the inverter's ({norm['mean']}, {norm['std']}) {where}: attack with "
            f"--norm-mean/--norm-std, or train with --mean/--std"
        )
    protocol = obs.protocol.to_dict()
    trained = record.get("protocol", {})
    if protocol["kind"] != trained.get("kind") or protocol["loss"] != trained.get("loss"):
        raise GradinvError(
            f"the inverter {where} inverts {trained.get('kind')} updates with loss "
            f"{trained.get('loss')!r}; the observation is {protocol['kind']} with "
            f"{protocol['loss']!r}"
        )


def untrained_inverter(obs: Observation, batch_size: int, seed: int) -> Inverter:
    """A tiny randomly initialised inverter for this observation (contract tests, demos): its
    images are meaningless, its interface is the real one."""
    names = trainable_names(obs.model)
    update = flatten(obs.update, names).detach().float().cpu()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = Inverter(len(update), obs.input_shape, [batch_size], hidden=(32,),
                       sketch=min(256, len(update)), sketch_seed=seed)  # fmt: skip
    with torch.no_grad():
        scale = update.abs().mean().clamp_min(1e-12)
        net.entry_scale.fill_(1 / float(scale))
    net.record = {"model": {"parameter_names": names}, "defenses": list(obs.defenses)}
    return net.eval()


@ATTACKS.register(
    "learned", "Learning to Invert (Wu et al. 2023): a network trained for this model maps the "
    "update to the images in one forward pass (gradinv train-inverter)",
)  # fmt: skip
@dataclass
class Learned(Attack):
    """Learned inversion, Wu et al., "Learning to Invert: Simple Adaptive Attacks for Gradient
    Inversion in Federated Learning", UAI 2023. An MLP trained (`gradinv train-inverter`) on
    updates of the same shared model — optionally defended, so the attacker adapts to the
    defense — maps the observed update to the batch's images in one forward pass. When the batch
    size is hidden, the network counts it (a count head over the trained sizes, or the set head's
    present slots), kept at or above the analytic rank bound on undefended updates.

    Example::

        out = train_inverter("lenet", "fashion-mnist@train", 1, 28, epochs=10, out="inv")
        obs = observe(model, images, labels, mean=[0.3006], std=[0.3622])
        rec = make_attack("learned", inverter="inv").reconstruct(obs)
        print(rec.info["batch_size"], evaluate(rec.images, images)["psnr"])
    """

    name = "learned"
    contract_options = {"inverter": "untrained"}
    inverter: str = option(
        "", "inverter directory (gradinv train-inverter); 'untrained': a tiny random one (tests)"
    )
    count: str = option(
        "auto", "hidden batch size from: auto (the network's count, at least the analytic rank "
        "bound on undefended updates), analytic (the rank estimate), network", choices=COUNTS,
    )  # fmt: skip

    def reconstruct(self, observation: Observation) -> Reconstruction:
        self.check()
        obs = observation.validate()
        start = time.perf_counter()
        if not self.inverter:
            raise GradinvError(
                "learned: name a trained inverter with --attack-opt inverter=DIR "
                "(train one with `gradinv train-inverter`)"
            )
        analytic = self._analytic(obs) if obs.batch_size is None else None
        if self.inverter == "untrained":
            b = obs.batch_size or (analytic or {}).get("estimate") or 1
            net, where = untrained_inverter(obs, int(b), self.seed), "(untrained)"
        else:
            net, where = load_inverter(self.inverter), f"in {self.inverter}"
            check_compatible(net.record, obs, where)
        update = flatten(obs.update, net.record["model"]["parameter_names"])
        info: dict[str, Any] = {"inverter": self.inverter}
        if obs.batch_size is not None:
            b, source = int(obs.batch_size), "told"
        else:
            b, source = self._hidden(net, obs, update.detach().float().cpu(), analytic)
            info["analytic_batch_size"] = analytic
        inv = net.invert(update.detach().float().cpu()[None], b)[0]
        info |= {"batch_size": int(inv.images.shape[0]), "batch_size_source": source,
                 "network_batch_size": inv.network_batch_size, **inv.facts}  # fmt: skip
        trained = net.record.get("defenses", [])
        if list(obs.defenses) != list(trained):
            info["warning"] = (
                f"the observation's defenses {[d['name'] for d in obs.defenses]} differ from "
                f"those the inverter was trained on {[d['name'] for d in trained]}"
            )
        info["seconds"] = round(time.perf_counter() - start, 4)
        images = inv.images.to(torch.float32).clamp(0, 1)
        return Reconstruction(images=images, info=info)

    @staticmethod
    def _analytic(obs: Observation) -> dict[str, Any] | None:
        try:
            e = estimate_batch_size(obs)
        except GradinvError:
            return None
        return {"estimate": e.estimate, "at_least": e.at_least, "layer": e.layer,
                "confidence": e.confidence}  # fmt: skip

    def _hidden(
        self, net: Inverter, obs: Observation, update: torch.Tensor, analytic: dict | None
    ) -> tuple[int, str]:
        """The batch size to invert for when the observation hides it, and where it came from.

        analytic: the rank estimate (None on LeNet, whose only linear layer is the classifier:
        its rank counts distinct labels, a lower bound only). network: the count head (or the set head's present
        slots). auto: the network's most probable size among those the analytic lower bound
        allows (rank(∇W) ≤ B) — the bound only holds for undefended updates (noise, sign and
        pruning raise the rank), so under a defense auto is the network alone."""
        if self.count == "analytic":
            estimate = (analytic or {}).get("estimate")
            if estimate is None:
                at_least = (analytic or {}).get("at_least")
                raise GradinvError(
                    "learned: the update cannot reveal the batch size analytically"
                    + (f" (it shows at least {at_least} samples)" if at_least else "")
                    + "; use count=network or count=auto"
                )
            return int(estimate), "analytic"
        inv = net.invert(update[None])[0]
        bound = (analytic or {}).get("at_least") if not obs.defenses else None
        if self.count == "network" or bound is None or inv.network_batch_size >= bound:
            return inv.network_batch_size, "network"
        if net.head_kind == "set":
            return min(int(bound), net.max_batch), "network, raised to the analytic bound"
        prob = inv.facts.get("count_probabilities", {})
        allowed = {int(k): v for k, v in prob.items() if int(k) >= bound}
        if not allowed:  # the bound exceeds every trained size
            return net.max_batch, "largest trained size (analytic bound)"
        return max(allowed, key=lambda k: (allowed[k], -k)), "network within the analytic bound"
