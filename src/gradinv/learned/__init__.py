"""Learned inversion (Wu et al., "Learning to Invert", UAI 2023): a network trained on
(update, images) pairs computed through the fixed shared model inverts an update in one forward
pass. Rooms: `sketch` (feature hashing), `updates` (per-sample gradients, client-exact batch
updates and defenses), `network` (the MLP and its heads), `matching` (the Hungarian batch loss),
`train` (resumable training), `store` (safetensors + JSON), `cache`.

    from gradinv.learned import train_inverter, load_inverter
    out = train_inverter("lenet", "fashion-mnist@train", 1, 28, batch_sizes=(1,), epochs=10,
                         out="inv/lenet28")
    # then: make_attack("learned", inverter=out).reconstruct(observation)
"""

from __future__ import annotations

from .cache import cached_inverter, inverter_cache_root
from .matching import assignment, matched_mse
from .network import HEADS, Inversion, Inverter
from .session import epoch_plan, matched_psnr, split_images
from .sketch import CountSketch
from .store import load_inverter, read_record, save_inverter
from .train import InverterOptions, train_inverter
from .updates import UpdateMaker, fingerprint, flatten, trainable_names, unflatten

__all__ = [
    "HEADS",
    "CountSketch",
    "Inversion",
    "Inverter",
    "InverterOptions",
    "UpdateMaker",
    "assignment",
    "cached_inverter",
    "epoch_plan",
    "fingerprint",
    "flatten",
    "inverter_cache_root",
    "load_inverter",
    "matched_mse",
    "matched_psnr",
    "read_record",
    "save_inverter",
    "split_images",
    "train_inverter",
    "trainable_names",
    "unflatten",
]
