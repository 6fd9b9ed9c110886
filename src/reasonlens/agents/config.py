"""The training config of a DQN agent, with per-environment recipes that are known to learn.

Measured on 2 CPU cores (docs/agents.md): Empty-5x5 needs γ≈0.9 — with γ=0.99 the Q-values of the
three actions stay nearly equal and the greedy agent loops. LavaCrossing learns with the navigation
actions, γ=0.95, 5-step returns and 8 parallel environments; a single environment with 1-step returns
stays near 0% for the first few hundred thousand steps.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from reasonlens.utils.config import StrictConfig

LAVA_RECIPE = {
    "gamma": 0.95,
    "n_step": 5,
    "n_envs": 8,
    "learning_rate": 5e-4,
    "buffer_size": 100_000,
    "learning_starts": 2_000,
    "batch_size": 128,
    "train_freq": 1,
    "gradient_steps": 2,
    "target_update_interval": 1_000,
    "exploration_fraction": 0.25,
    "exploration_final_eps": 0.05,
    "learning_rate_final": 5e-5,
}

RECIPES: dict[str, dict] = {
    "MiniGrid-Empty-5x5-v0": {
        "gamma": 0.9,
        "n_step": 1,
        "n_envs": 4,
        "learning_rate": 1e-3,
        "buffer_size": 20_000,
        "learning_starts": 500,
        "batch_size": 64,
        "train_freq": 1,
        "gradient_steps": 1,
        "target_update_interval": 250,
        "exploration_fraction": 0.3,
        "exploration_final_eps": 0.05,
        "steps": 15_000,
    },
    "MiniGrid-LavaCrossingS9N1-v0": {**LAVA_RECIPE, "steps": 250_000},
    "MiniGrid-LavaCrossingS9N2-v0": {**LAVA_RECIPE, "steps": 400_000},
    "MiniGrid-LavaCrossingS9N3-v0": {**LAVA_RECIPE, "steps": 500_000},
    # DQN alone stayed at 0% here; with the shortest-path guide and its margin loss (agents/guide.py): ~90%
    "MiniGrid-LavaCrossingS11N5-v0": {
        **LAVA_RECIPE,
        "steps": 300_000,
        "eval_every": 50_000,
        "exploration_fraction": 0.4,
        "exploration_guide": 1.0,
        "guide_margin": 1.0,
    },
}


class AgentConfig(StrictConfig):
    """Everything that defines a training run; written to ``config.yaml`` in the agent directory."""

    env_id: str
    steps: int = Field(100_000, ge=1, description="environment steps, summed over the parallel envs")
    seed: int = 0
    actions: Literal["navigation", "all"] = "navigation"
    net_arch: list[int] = Field(default_factory=lambda: [128, 128], min_length=1)
    gamma: float = Field(0.95, gt=0, le=1)
    n_step: int = Field(1, ge=1, description="n-step returns (SB3 DQN n_steps)")
    n_envs: int = Field(1, ge=1)
    learning_rate: float = Field(5e-4, gt=0)
    learning_rate_final: float | None = Field(None, gt=0, description="decay linearly to this (None: constant)")
    buffer_size: int = Field(100_000, ge=1)
    learning_starts: int = Field(1_000, ge=0)
    batch_size: int = Field(64, ge=1)
    train_freq: int = Field(1, ge=1, description="vector-env steps between updates")
    gradient_steps: int = Field(1, ge=1)
    target_update_interval: int = Field(1_000, ge=1)
    exploration_fraction: float = Field(0.25, ge=0, le=1)
    exploration_initial_eps: float = Field(1.0, ge=0, le=1, description="lower it when starting from weights")
    exploration_final_eps: float = Field(0.05, ge=0, le=1)
    exploration_guide: float = Field(
        0.0, ge=0, le=1, description="chance an exploratory action follows the shortest safe path (agents/guide.py)"
    )
    guide_margin: float = Field(0.0, ge=0, description="weight of the large-margin loss toward the guide's actions")
    eval_every: int = Field(25_000, ge=1, description="steps between success-rate evaluations")
    eval_episodes: int = Field(100, ge=1)
    eval_seed: int = Field(1_000_000, description="first reset seed of the evaluation episodes")
    keep_best: bool = Field(True, description="save the snapshot with the best evaluated success rate")
    test_episodes: int = Field(200, ge=1, description="final test episodes, on seeds disjoint from the evaluations")
    test_seed: int = Field(2_000_000, description="first reset seed of the final test episodes")
    init_from: str | None = Field(None, description="start from this agent directory's kept weights")
    init_seed: int | None = Field(
        None, description="draw the initial weights with this seed, not `seed` (same init_seed: same start)"
    )
    device: str = "cpu"


def config_for(env_id: str, **overrides) -> AgentConfig:
    """The recipe for ``env_id`` (if one exists) with ``overrides`` on top; unknown envs get the defaults."""
    fields = {"env_id": env_id, **RECIPES.get(env_id, {})}
    fields.update({k: v for k, v in overrides.items() if v is not None})
    return AgentConfig.from_dict(fields)
