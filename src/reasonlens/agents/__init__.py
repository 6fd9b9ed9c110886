"""The agents family: DQN agents in MiniGrid (stable-baselines3) and neuron-level patching of their
Q-networks (seed 001, "Guide to Neuron Patching") on the interp engine.

- :mod:`~reasonlens.agents.envs` — wrapped environments, states and their observations;
- :mod:`~reasonlens.agents.train` — training and success rates; :mod:`~reasonlens.agents.agent` — agent directories;
- :mod:`~reasonlens.agents.inputs` — input files and clean/corrupted pairs;
- :mod:`~reasonlens.agents.extraction` — activations per layer and input (``.npz`` + readable JSON);
- :mod:`~reasonlens.agents.experiment` — :class:`PatchingExperiment`, batched through the engine;
- :mod:`~reasonlens.agents.neurons` — difference ranking, dead/alive units, ablation, narrowing search.

Needs the ``[agents]`` extra; names are imported lazily so ``import reasonlens.agents`` stays cheap.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Agent": "reasonlens.agents.agent",
    "AgentConfig": "reasonlens.agents.config",
    "AgentError": "reasonlens.agents.errors",
    "PatchingExperiment": "reasonlens.agents.experiment",
    "config_for": "reasonlens.agents.config",
    "evaluate_agent": "reasonlens.agents.train",
    "extract_activations": "reasonlens.agents.extraction",
    "make_env": "reasonlens.agents.envs",
    "make_input_pairs": "reasonlens.agents.inputs",
    "train_agent": "reasonlens.agents.train",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'reasonlens.agents' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
