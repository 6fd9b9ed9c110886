"""Alias package for seed 001's import path (``from Neuron_Selection.PatchingTooling import
PatchingExperiment``): the guide's snippets run unchanged. The code lives in :mod:`reasonlens.agents`."""
