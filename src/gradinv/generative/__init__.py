"""Generators trained here (never downloaded), as priors for generative attacks (GIAS, GIFD, GGL,
deep image prior): architectures, resumable training, safetensors + JSON files, a cache."""

from __future__ import annotations

from .cache import cache_root, cached_generator, recipe_hash
from .dcgan import DCGANDiscriminator, DCGANGenerator
from .generator import Generator
from .kinds import KINDS, build_generator, generator_options
from .store import load_generator, read_record, save_generator
from .train import TrainOptions, train_generator

__all__ = [
    "KINDS",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "Generator",
    "TrainOptions",
    "build_generator",
    "cache_root",
    "cached_generator",
    "generator_options",
    "load_generator",
    "read_record",
    "recipe_hash",
    "save_generator",
    "train_generator",
]
