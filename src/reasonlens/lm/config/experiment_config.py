"""The config of the SFT-vs-RL experiment (``reasonlens lm experiment``): the SFT regimes, the SFT checkpoints
RL starts from, the arms, the seeds, and what is evaluated and analysed.

It is the ``experiment`` section of one YAML whose ``task``, ``sft``, ``rl`` and ``analysis`` sections are
the usual configs (:mod:`reasonlens.lm.config`): they give the large SFT regime's data and recipe, the
GRPO recipe every RL arm shares, and the circuit analyses' settings. Each arm is a ``method`` from a
``start``:

- ``grpo`` — GRPO (trl) on the arm's prompt ``mix`` (default: ID prompts only);
- ``sft`` — the control: SFT continued on the ID training set for as many samples as a GRPO arm sees
  (``rl.max_steps × rl.batch_size`` completions), at ``control_learning_rate``.

A start is ``best`` (the large regime's best checkpoint), a step the large regime kept (``keep_steps``), or
the path of a checkpoint of an earlier SFT run on the same task (``runs/lm/sft/best``,
``runs/lm/sft/steps/step_500``).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from reasonlens.utils.config import StrictConfig

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ArmConfig(StrictConfig):
    name: str = Field(description="folder name of the arm: letters, digits, '_', '-', '.'")
    method: Literal["grpo", "sft"]
    start: str = Field(description="the name of one of the experiment's starts (e.g. 'early', 'late')")
    mix: dict[str, float] | None = Field(None, description="GRPO prompt mix (default: the rl section's mix)")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError(f"arm name {value!r} must be letters, digits, '_', '-' or '.' (it names a folder)")
        return value

    @model_validator(mode="after")
    def _mix_for_grpo(self) -> ArmConfig:
        if self.method == "sft" and self.mix is not None:
            raise ValueError(f"arm {self.name!r}: a mix applies to GRPO arms only (the SFT control trains on ID)")
        return self


class SmallDataConfig(StrictConfig):
    """The memorisation regime: few training examples, trained long enough to fit them."""

    n_train: int = Field(2000, ge=1)
    max_steps: int = Field(1500, ge=1)
    keep_steps: list[int] = Field(default_factory=lambda: [250, 500, 1000])


class ExperimentConfig(StrictConfig):
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1, description="one run per arm and seed")
    starts: dict[str, int | str] = Field(
        default_factory=lambda: {"early": 1000, "late": "best"},
        description="name -> SFT checkpoint RL starts from: a kept step of the large regime, 'best', or the path "
        "of a checkpoint of an earlier SFT run",
    )
    arms: list[ArmConfig] = Field(
        default_factory=lambda: [
            ArmConfig(name="grpo_id_early", method="grpo", start="early"),
            ArmConfig(name="grpo_id_late", method="grpo", start="late"),
            ArmConfig(name="grpo_mix_late", method="grpo", start="late", mix={"id": 0.8, "paraphrase": 0.2}),
            ArmConfig(name="sft_more_late", method="sft", start="late"),
        ],
        min_length=1,
    )
    small_data: SmallDataConfig | None = Field(
        default_factory=SmallDataConfig, description="the memorisation regime (null: large regime only)"
    )
    control_learning_rate: float = Field(1e-4, gt=0, description="learning rate of the continued-SFT control")
    eval_examples: int = Field(300, ge=1, description="examples per split for every final evaluation")
    curve_examples: int = Field(100, ge=1, description="examples per split at each kept SFT step")
    circuit_seed: int | None = Field(None, description="the seed whose models are analysed (default: the first)")
    circuit_arms: list[str] | None = Field(None, description="arms compared with their start (default: all)")

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError(f"seeds must be distinct, got {value}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        names = [arm.name for arm in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must be distinct, got {names}")
        for arm in self.arms:
            if arm.start not in self.starts:
                raise ValueError(
                    f"arm {arm.name!r} starts from {arm.start!r}; the starts are: {', '.join(self.starts)}"
                )
        for name, start in self.starts.items():
            if not NAME.match(name):
                raise ValueError(f"start name {name!r} must be letters, digits, '_', '-' or '.' (it names a folder)")
            if isinstance(start, int) and start < 1:
                raise ValueError(f"start {name!r}: a kept SFT step must be >= 1, got {start}")
        if self.circuit_seed is not None and self.circuit_seed not in self.seeds:
            raise ValueError(f"circuit_seed {self.circuit_seed} is not one of the seeds {self.seeds}")
        unknown = [a for a in self.circuit_arms or [] if a not in names]
        if unknown:
            raise ValueError(f"unknown circuit arm(s) {', '.join(unknown)}; the arms are: {', '.join(names)}")
        return self

    def arm(self, name: str) -> ArmConfig:
        return next(arm for arm in self.arms if arm.name == name)

    def kept_steps(self) -> list[int]:
        """The large regime's steps that must be kept because an arm starts there."""
        return sorted({s for s in self.starts.values() if isinstance(s, int)})
