"""Analyses of what an update determines: R-GAP's per-layer rank analysis."""

from .rank import LayerRank, LayerSystem, chain, rank_table

__all__ = ["LayerRank", "LayerSystem", "chain", "rank_table"]
