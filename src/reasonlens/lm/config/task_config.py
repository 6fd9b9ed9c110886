"""The task and dataset config: which rule families, the in-distribution palette and ranges, the OOD
categories built by construction, dataset sizes and seeds, prompt formatting.

Every OOD category changes exactly one thing relative to the in-distribution (ID) examples; see
:mod:`reasonlens.lm.tasks.rules` and docs/lm.md for what each one is.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from reasonlens.lm.errors import LMError
from reasonlens.utils.config import StrictConfig

FAMILIES = ("sum_colour", "sum_a_minus_b", "sum_predicate", "count_predicate", "sum_colour_predicate")
OOD_CATEGORIES = ("unseen_colour", "unseen_composition", "paraphrase", "more_cards", "shifted_numbers")


def check_names(values: list[str], allowed: tuple[str, ...], what: str, required: bool = True) -> list[str]:
    """``values`` without duplicates if each is in ``allowed``, else one error naming the unknown ones and
    the allowed set (``required``: at least one value)."""
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ValueError(f"unknown {what} {', '.join(map(repr, unknown))}; allowed: {', '.join(allowed)}")
    if required and not values:
        raise ValueError(f"needs at least one {what}; allowed: {', '.join(allowed)}")
    return list(dict.fromkeys(values))


class TaskConfig(StrictConfig):
    """The rule-based scoring game and its datasets. Defaults give a task a 4-layer GPT-2 learns on CPU."""

    families: list[str] = Field(default_factory=lambda: list(FAMILIES))
    colours: list[str] = Field(default_factory=lambda: ["RED", "BLUE", "GREEN", "YELLOW"])
    unseen_colours: list[str] = Field(default_factory=lambda: ["PURPLE", "ORANGE"])
    number_range: tuple[int, int] = (1, 9)
    shifted_number_range: tuple[int, int] = (11, 19)
    n_cards: tuple[int, int] = (3, 5)
    more_cards: tuple[int, int] = (7, 9)
    threshold_margin: int = Field(5, ge=1, description="thresholds lie within ±margin of the total")
    answer_format: Literal["label", "total_label", "worked"] = "label"
    ood_categories: list[str] = Field(default_factory=lambda: list(OOD_CATEGORIES))
    n_train: int = Field(20_000, ge=1)
    n_val: int = Field(500, ge=1)
    n_test: int = Field(500, ge=1)
    n_ood: int = Field(500, ge=1, description="examples per OOD test set")
    max_length: int = Field(128, ge=8, description="token budget of prompt + answer (the model's context)")
    seed: int = 0

    @field_validator("families")
    @classmethod
    def _families(cls, value: list[str]) -> list[str]:
        return check_names(value, FAMILIES, "rule family")

    @field_validator("ood_categories")
    @classmethod
    def _categories(cls, value: list[str]) -> list[str]:
        if not value:
            return []
        return check_names(value, OOD_CATEGORIES, "OOD category")

    @model_validator(mode="after")
    def _consistent(self) -> TaskConfig:
        for name in ("number_range", "shifted_number_range", "n_cards", "more_cards"):
            low, high = getattr(self, name)
            if low > high or low < 0:
                raise ValueError(f"{name} must be (low, high) with 0 <= low <= high, got ({low}, {high})")
        if self.n_cards[0] < 1:
            raise ValueError("n_cards must allow at least one card")
        overlap = set(self.colours) & set(self.unseen_colours)
        if overlap:
            raise ValueError(f"colours and unseen_colours overlap: {sorted(overlap)}")
        if len(self.colours) < 2:
            raise ValueError("needs at least two colours (sum_a_minus_b uses two)")
        if "unseen_composition" in self.ood_categories and "sum_colour_predicate" not in self.families:
            raise ValueError("OOD category 'unseen_composition' holds out pairs of family 'sum_colour_predicate'")
        if "unseen_colour" in self.ood_categories and not self.unseen_colours:
            raise ValueError("OOD category 'unseen_colour' needs unseen_colours")
        if "unseen_colour" in self.ood_categories and not set(self.families) & set(COLOUR_FAMILIES):
            raise ValueError(f"OOD category 'unseen_colour' needs a colour family: {', '.join(COLOUR_FAMILIES)}")
        return self

    def check_category(self, category: str) -> str:
        """``category`` if this config builds it, else one clear error listing the ones it does."""
        if category not in self.ood_categories:
            raise LMError(
                f"unknown OOD category {category!r}; this task has: {', '.join(self.ood_categories) or 'none'}"
                f" (all categories: {', '.join(OOD_CATEGORIES)})"
            )
        return category


COLOUR_FAMILIES = ("sum_colour", "sum_a_minus_b", "sum_colour_predicate")
