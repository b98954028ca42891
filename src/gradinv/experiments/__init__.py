"""Experiments that reproduce findings of the literature with one command."""
