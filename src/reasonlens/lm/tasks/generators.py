"""Sampling examples of the scoring game: cards for a rule, the ground truth and the intermediate labels
an analysis probes for (per-colour sums, which cards the rule selects, each card's contribution, the
total, the label). Returns plain dictionaries; :mod:`~reasonlens.lm.tasks.formatting` makes text.

How each distribution differs from ID (exactly one change each):

- ``unseen_colour`` — the rule names a colour never used in training (PURPLE, ORANGE), and at least one card
  has that colour (so a worked answer must select a card by a colour word it never saw selected);
- ``unseen_composition`` — a held-out (colour, predicate) pair of ``sum_colour_predicate``;
- ``paraphrase`` — the held-out phrasing of the rule and of the threshold sentence;
- ``more_cards`` — 7–9 cards instead of 3–5;
- ``shifted_numbers`` — card numbers 11–19 instead of 1–9.

The threshold is the total plus an offset drawn uniformly from [−margin, margin−1], so BIG and SMALL are
equally likely and the model must compute the total to answer.
"""

from __future__ import annotations

import random

from reasonlens.lm.config.task_config import COLOUR_FAMILIES, TaskConfig
from reasonlens.lm.tasks.formatting import N_ID_TEMPLATES, format_answer, format_prompt, rule_line, rule_text
from reasonlens.lm.tasks.rules import Rule, family_index, sample_rule


def sample_cards(rule: Rule, config: TaskConfig, rng: random.Random, distribution: str) -> list[tuple[str, int]]:
    count_range = config.more_cards if distribution == "more_cards" else config.n_cards
    low, high = config.shifted_number_range if distribution == "shifted_numbers" else config.number_range
    palette = list(config.colours)
    palette += [c for c in rule.colours if c not in palette]  # an unseen colour of the rule shows up on cards
    cards = [(rng.choice(palette), rng.randint(low, high)) for _ in range(rng.randint(*count_range))]
    kept = None
    if rule.add:  # the rule's colour appears at least once, so its total is not trivially zero
        kept = rng.randrange(len(cards))
        cards[kept] = (rule.add[0], rng.randint(low, high))
    if distribution == "unseen_colour":  # so does an unseen colour the rule subtracts (on another card)
        for colour in rule.subtract:
            if colour in config.unseen_colours and len(cards) > 1:
                slot = rng.choice([i for i in range(len(cards)) if i != kept])
                cards[slot] = (colour, rng.randint(low, high))
    return cards


def labels_for(rule: Rule, cards: list[tuple[str, int]], palette: list[str]) -> dict:
    """The intermediate labels of (rule, cards)."""
    contributions = [rule.contribution(c, n) for c, n in cards]
    return {
        "colour_sums": [sum(n for c, n in cards if c == colour) for colour in palette],
        "selected": [rule.selects(c, n) for c, n in cards],
        "contributions": contributions,
        "total": sum(contributions),
    }


def make_example(
    config: TaskConfig,
    rng: random.Random,
    distribution: str = "id",
    family: str | None = None,
    rule: Rule | None = None,
    cards: list[tuple[str, int]] | None = None,
    threshold: int | None = None,
    template: int | None = None,
) -> dict:
    """One example as a flat dict (the dataset columns). Unset parts are sampled for ``distribution``."""
    if rule is None:
        families = config.families
        if distribution == "unseen_colour":
            families = [f for f in families if f in COLOUR_FAMILIES]
        elif distribution == "unseen_composition":
            families = ["sum_colour_predicate"]
        rule = sample_rule(family or rng.choice(families), config, rng, distribution)
    if cards is None:
        cards = sample_cards(rule, config, rng, distribution)
    palette = [*config.colours, *config.unseen_colours]
    labels = labels_for(rule, cards, palette)
    if threshold is None:
        threshold = labels["total"] + rng.randrange(-config.threshold_margin, config.threshold_margin)
    if template is None:
        template = N_ID_TEMPLATES if distribution == "paraphrase" else rng.randrange(N_ID_TEMPLATES)
    label = "BIG" if labels["total"] > threshold else "SMALL"
    sentence = rule_text(rule, threshold, template)
    worked = {
        "rule": rule_line(rule),
        "cards": cards,
        "selected": labels["selected"],
        "contributions": labels["contributions"],
        "threshold": threshold,
    }
    return {
        "prompt": format_prompt(sentence, cards, config.answer_format),
        "completion": format_answer(label, labels["total"], config.answer_format, worked),
        "distribution": distribution,
        "family": rule.family,
        "family_id": family_index(rule.family),
        "rule": rule.name,
        "rule_text": sentence,
        "rule_line": worked["rule"],
        "template": template,
        "threshold": threshold,
        "colours": [c for c, _ in cards],
        "numbers": [n for _, n in cards],
        "n_cards": len(cards),
        "label": label,
        "label_id": int(label == "BIG"),
        **labels,
    }
