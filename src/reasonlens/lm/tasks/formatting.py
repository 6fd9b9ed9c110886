"""Structured examples → the prompt text GPT-2 sees and the answer it must produce, and back.

The prompt keeps three explicit blocks (rule, cards, answer)::

    Rule: Add the numbers on RED cards. If the total is more than 7, answer BIG, otherwise SMALL.
    Cards:
    RED 3
    BLUE 5

    Answer:

The completion is `` BIG`` / `` SMALL`` (``answer_format="label"``) or `` 12 BIG`` (``"total_label"``).
Each rule family has two in-distribution phrasings and one held-out paraphrase (the ``paraphrase`` OOD
set), and so does the threshold sentence.
"""

from __future__ import annotations

import re

from reasonlens.lm.errors import LMError
from reasonlens.lm.tasks.rules import Rule

RULE_TEMPLATES = {  # family -> (ID phrasings..., held-out paraphrase last)
    "sum_colour": ("Add the numbers on {A} cards.", "Sum the {A} cards.", "Total up the value of every {A} card."),
    "sum_a_minus_b": (
        "Add the numbers on {A} cards and subtract the numbers on {B} cards.",
        "Sum the {A} cards minus the {B} cards.",
        "Take the {A} total and remove the {B} total from it.",
    ),
    "sum_predicate": (
        "Add the numbers on cards that are {P}.",
        "Sum the cards that are {P}.",
        "Total up every card whose number is {P}.",
    ),
    "count_predicate": (
        "Count the cards that are {P}.",
        "Count how many cards are {P}.",
        "Find how many of the cards have a number that is {P}.",
    ),
    "sum_colour_predicate": (
        "Add the numbers on {A} cards that are {P}.",
        "Sum the {A} cards that are {P}.",
        "Total up every {A} card whose number is {P}.",
    ),
}
THRESHOLD_TEMPLATES = (
    "If the total is more than {T}, answer BIG, otherwise SMALL.",
    "Answer BIG if the total is above {T}, else SMALL.",
    "Say BIG when the result exceeds {T} and SMALL when it does not.",
)
N_ID_TEMPLATES = 2
LABELS = ("BIG", "SMALL")


def predicate_text(predicate: str) -> str:
    if predicate.startswith("gt_"):
        return f"greater than {predicate.removeprefix('gt_')}"
    return predicate


def rule_text(rule: Rule, threshold: int, template: int) -> str:
    """The rule sentence + threshold sentence; ``template`` 0..1 are ID phrasings, 2 the paraphrase."""
    fields = {
        "A": rule.add[0] if rule.add else "",
        "B": rule.subtract[0] if rule.subtract else "",
        "P": predicate_text(rule.predicate) if rule.predicate else "",
    }
    sentence = RULE_TEMPLATES[rule.family][template].format(**fields)
    return f"{sentence} {THRESHOLD_TEMPLATES[template].format(T=threshold)}"


def format_prompt(rule_sentence: str, cards: list[tuple[str, int]]) -> str:
    lines = [f"Rule: {rule_sentence}", "Cards:", *(f"{colour} {number}" for colour, number in cards), "", "Answer:"]
    return "\n".join(lines)


def format_answer(label: str, total: int, answer_format: str) -> str:
    return f" {label}" if answer_format == "label" else f" {total} {label}"


_ANSWER = re.compile(r"^\s*(?:(-?\d+)\s+)?(BIG|SMALL)\b")


def parse_answer(text: str) -> tuple[int | None, str | None]:
    """(total or None, label or None) from generated text; anything unparseable gives (None, None)."""
    match = _ANSWER.match(text)
    if not match:
        return None, None
    total = int(match.group(1)) if match.group(1) is not None else None
    return total, match.group(2)


def check_length(n_tokens: int, max_length: int, what: str = "prompt + answer") -> None:
    if n_tokens > max_length:
        raise LMError(
            f"{what} is {n_tokens} tokens, longer than the context of {max_length} tokens "
            "(n_positions / max_length): use fewer cards or a model with a longer context"
        )
