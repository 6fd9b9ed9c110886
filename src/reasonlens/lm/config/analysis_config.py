"""The config of the mechanistic analyses: which layers, heads, splits and positions; probe, patching,
ablation and SAE settings; where artifacts go."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from reasonlens.lm.config.task_config import check_names
from reasonlens.utils.config import StrictConfig

POSITIONS = ("final", "cards_end", "rule_end")
PROBE_TARGETS = ("family", "label", "total", "colour_sums")
PAIRABLE = ("paraphrase", "unseen_colour", "more_cards")


class AnalysisConfig(StrictConfig):
    output_dir: str = "runs/lm/analysis"
    splits: list[str] | None = Field(None, description="dataset splits to analyse (default: test + every ood_*)")
    max_examples: int = Field(300, ge=8, description="examples per split")
    layers: list[int] | None = Field(None, description="layers to analyse (default: all)")
    heads: list[int] | None = Field(None, description="heads to ablate / patch (default: all)")
    positions: list[str] = Field(default_factory=lambda: list(POSITIONS))
    batch_size: int = Field(64, ge=1)
    device: str = "cpu"
    seed: int = 0
    # probes
    probe_targets: list[str] = Field(default_factory=lambda: list(PROBE_TARGETS))
    probe_test_fraction: float = Field(0.25, gt=0, lt=1)
    probe_l2: float = Field(1e-3, ge=0)
    # patching
    patch_categories: list[str] = Field(default_factory=lambda: list(PAIRABLE))
    patch_pairs: int = Field(100, ge=1)
    patch_positions: int = Field(8, ge=1, description="the last K positions of the prompt are patched one by one")
    patch_method: Literal["exact", "attribution"] = Field(
        "exact", description="exact patching, or the attribution estimate of the logit difference (a screen)"
    )
    # ablation
    ablation_ops: list[Literal["zero", "mean"]] = Field(default_factory=lambda: ["zero", "mean"])
    top_k: int = Field(5, ge=1, description="size of the important-component sets compared by Jaccard")
    # sparse autoencoders
    sae_layer: int | None = Field(None, description="residual stream after this block (default: the last)")
    sae_positions: Literal["final", "all"] = "all"
    sae_expansion: int = Field(4, ge=1)
    sae_l1: float = Field(1.0, ge=0)
    sae_steps: int = Field(2000, ge=1)
    sae_lr: float = Field(1e-3, gt=0)

    @field_validator("positions")
    @classmethod
    def _positions(cls, value: list[str]) -> list[str]:
        return check_names(value, POSITIONS, "position", required=False)

    @field_validator("probe_targets")
    @classmethod
    def _targets(cls, value: list[str]) -> list[str]:
        return check_names(value, PROBE_TARGETS, "probe target", required=False)

    @field_validator("patch_categories")
    @classmethod
    def _pairable(cls, value: list[str]) -> list[str]:
        return check_names(value, PAIRABLE, "patching category (answer-preserving counterfactuals)", required=False)
