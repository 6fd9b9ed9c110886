"""The rule space of the scoring game: primitives, rule families, concrete rules and which distribution a
rule belongs to by construction.

A card is (colour, number). A rule picks cards and aggregates them into a **total**:

- colour terms — add the numbers on cards of colour A, subtract those of colour B;
- a predicate on the number — ``even``, ``odd``, ``gt_k`` (greater than k);
- an aggregation — ``sum`` of the signed numbers or ``count`` of the selected cards;
- a threshold T — the answer is BIG if total > T, else SMALL.

Families (each with a concrete name, e.g. ``sum_red_minus_blue``):

=====================  ===========================================  ========================
family                 total                                         example name
=====================  ===========================================  ========================
sum_colour             Σ numbers on A cards                          ``sum_red``
sum_a_minus_b          Σ A − Σ B                                     ``sum_red_minus_blue``
sum_predicate          Σ numbers on cards satisfying P               ``sum_even``, ``sum_gt_5``
count_predicate        # cards satisfying P                          ``count_odd``
sum_colour_predicate   Σ numbers on A cards satisfying P             ``sum_green_gt_3``
=====================  ===========================================  ========================

**Unseen compositions** are held out by construction: of the (colour, predicate) pairs of
``sum_colour_predicate``, every third one in a fixed order never appears in training, although its
colour and its predicate each appear in other rules.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from reasonlens.lm.config.task_config import FAMILIES, TaskConfig
from reasonlens.lm.errors import LMError

PREDICATES = ("even", "odd", "gt_3", "gt_5", "gt_7")


def predicate_holds(predicate: str | None, number: int) -> bool:
    if predicate is None:
        return True
    if predicate == "even":
        return number % 2 == 0
    if predicate == "odd":
        return number % 2 == 1
    return number > int(predicate.removeprefix("gt_"))


@dataclass(frozen=True)
class Rule:
    """A concrete rule. ``add`` / ``subtract`` are colours (empty: every colour counts)."""

    family: str
    add: tuple[str, ...] = ()
    subtract: tuple[str, ...] = ()
    predicate: str | None = None
    aggregate: str = "sum"  # or "count"

    @property
    def name(self) -> str:
        parts = [self.aggregate, *(c.lower() for c in self.add)]
        if self.subtract:
            parts += ["minus", *(c.lower() for c in self.subtract)]
        if self.predicate:
            parts.append(self.predicate)
        return "_".join(parts)

    @property
    def colours(self) -> tuple[str, ...]:
        return self.add + self.subtract

    def selects(self, colour: str, number: int) -> bool:
        by_colour = not self.colours or colour in self.colours
        return by_colour and predicate_holds(self.predicate, number)

    def contribution(self, colour: str, number: int) -> int:
        if not self.selects(colour, number):
            return 0
        if self.aggregate == "count":
            return 1
        return -number if colour in self.subtract else number


def composition_pairs(colours: list[str]) -> list[tuple[str, str]]:
    return [(c, p) for c in colours for p in PREDICATES]


def held_out_pairs(colours: list[str]) -> set[tuple[str, str]]:
    """The (colour, predicate) pairs of ``sum_colour_predicate`` that only the OOD set uses."""
    return {pair for i, pair in enumerate(composition_pairs(colours)) if i % 3 == 0}


_NAME = re.compile(r"^(sum|count)((?:_[a-z]+)*?)(?:_minus_([a-z]+))?(?:_(even|odd|gt_\d+))?$")


def rule_from_name(name: str, config: TaskConfig) -> Rule:
    """Parse a concrete rule name (``sum_red_minus_blue``, ``count_gt_5``, ``sum_green_even``)."""
    match = _NAME.match(name)
    palette = {c.lower(): c for c in [*config.colours, *config.unseen_colours]}
    if match:
        aggregate, adds, minus, predicate = match.groups()
        add = tuple(palette.get(c, c) for c in adds.strip("_").split("_") if c)
        subtract = (palette.get(minus, minus),) if minus else ()
        if all(c in palette.values() for c in add + subtract) and len(add) <= 1:
            family = _family_of(aggregate, add, subtract, predicate)
            if family is not None and family in config.families:
                return Rule(family, add, subtract, predicate, aggregate)
    raise LMError(
        f"unknown rule family {name!r}; allowed families: {', '.join(config.families)} "
        "or a concrete rule such as sum_red, sum_red_minus_blue, sum_even, count_gt_5, sum_red_odd"
    )


def _family_of(aggregate, add, subtract, predicate) -> str | None:
    if aggregate == "count":
        return "count_predicate" if predicate and not add and not subtract else None
    if add and subtract:
        return "sum_a_minus_b" if not predicate else None
    if add:
        return "sum_colour_predicate" if predicate else "sum_colour"
    return "sum_predicate" if predicate and not subtract else None


def sample_rule(family: str, config: TaskConfig, rng: random.Random, distribution: str = "id") -> Rule:
    """A rule of ``family`` (a family name or a concrete rule name) for ``distribution``: ``id``,
    ``unseen_colour`` (at least one colour of the rule is unseen) or ``unseen_composition`` (a held-out
    colour/predicate pair). Other distributions use ID rules."""
    if family not in FAMILIES:
        return rule_from_name(family, config)
    if family not in config.families:
        raise LMError(f"rule family {family!r} is not in this task; its families: {', '.join(config.families)}")
    colours = list(config.colours)
    held_out = held_out_pairs(colours)
    if distribution == "unseen_colour":
        if family not in ("sum_colour", "sum_a_minus_b", "sum_colour_predicate"):
            raise LMError(f"family {family!r} names no colour, so it has no unseen-colour rules")
        new = rng.choice(config.unseen_colours)
        if family == "sum_a_minus_b":
            other = rng.choice(colours)
            add, subtract = ((new,), (other,)) if rng.random() < 0.5 else ((other,), (new,))
            return Rule(family, add, subtract)
        predicate = rng.choice(PREDICATES) if family == "sum_colour_predicate" else None
        return Rule(family, (new,), (), predicate)
    if family == "sum_colour":
        return Rule(family, (rng.choice(colours),))
    if family == "sum_a_minus_b":
        a, b = rng.sample(colours, 2)
        return Rule(family, (a,), (b,))
    if family in ("sum_predicate", "count_predicate"):
        return Rule(family, (), (), rng.choice(PREDICATES), "count" if family == "count_predicate" else "sum")
    pairs = composition_pairs(colours)
    wanted = [p for p in pairs if (p in held_out) == (distribution == "unseen_composition")]
    colour, predicate = rng.choice(wanted)
    return Rule(family, (colour,), (), predicate)


def family_index(family: str) -> int:
    return FAMILIES.index(family)
