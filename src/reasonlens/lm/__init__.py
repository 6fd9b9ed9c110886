"""The lm family (seed 002, "SFT memorizes, RL generalizes: circuit-level analysis on a small GPT-2").

- :mod:`~reasonlens.lm.config` — typed configs: task, SFT/RL training, analysis;
- :mod:`~reasonlens.lm.tasks` — the rule-based card game: rules, generators, formatting, datasets (ID + OOD);
- :mod:`~reasonlens.lm.models` — local tokenizer, GPT-2 checkpoints, the RL policy view, TransformerLens conversion;
- :mod:`~reasonlens.lm.envs` — the game as a gym-style text environment (the RL reward);
- :mod:`~reasonlens.lm.training` — SFT (transformers.Trainer), RL (trl GRPO), evaluation JSON;
- :mod:`~reasonlens.lm.analysis` — probes, ID↔OOD patching, ablations, SAE features over the interp engine.

Needs the ``[lm]`` extra (and ``[sae]`` for SAEs); names are imported lazily so ``import reasonlens.lm``
stays cheap. Guide: docs/lm.md.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "AnalysisConfig": "reasonlens.lm.config.analysis_config",
    "LMError": "reasonlens.lm.errors",
    "RLConfig": "reasonlens.lm.config.training_config",
    "SFTConfig": "reasonlens.lm.config.training_config",
    "TaskConfig": "reasonlens.lm.config.task_config",
    "TextGameEnv": "reasonlens.lm.envs.text_game_env",
    "build_sft_datasets": "reasonlens.lm.tasks.dataset",
    "evaluate_checkpoint": "reasonlens.lm.training.evaluation",
    "load_checkpoint": "reasonlens.lm.models.lm_loader",
    "run_rl": "reasonlens.lm.training.rl_trainer",
    "run_sft": "reasonlens.lm.training.sft_trainer",
    "to_hooked_transformer": "reasonlens.lm.models.conversion",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'reasonlens.lm' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
