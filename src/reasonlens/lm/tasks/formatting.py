"""Structured examples → the prompt text GPT-2 sees and the answer it must produce, and back.

The prompt keeps three explicit blocks (rule, cards, answer)::

    Rule: Add the numbers on RED cards. If the total is more than 7, answer BIG, otherwise SMALL.
    Cards:
    RED 3
    BLUE 5

    Answer:

The completion is `` BIG`` / `` SMALL`` (``answer_format="label"``) or `` 12 BIG`` (``"total_label"``).
With ``"worked"`` the prompt ends in ``Work:`` instead, and the completion writes out the intermediate labels:
the rule in one canonical line (what is aggregated, which colours are added and subtracted, the number
condition), one card per line (its contribution and the running total, or ``skip`` for a card the rule does
not select), the comparison with the threshold, and the same answer line::

    Work:
    rule sum RED
    RED 3 +3 =3
    BLUE 5 skip =3
    total 3 <= 7
    Answer: SMALL

(``rule sum RED minus BLUE``, ``rule count odd``, ``rule sum GREEN greater than 5``: the words of the
prompt, so a paraphrased rule must be read into the same line.)

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


def rule_line(rule: Rule) -> str:
    """The worked format's canonical statement of ``rule``: ``rule sum RED minus BLUE``."""
    words = ["rule", rule.aggregate, *rule.add]
    if rule.subtract:
        words += ["minus", *rule.subtract]
    if rule.predicate:
        words.append(predicate_text(rule.predicate))
    return " ".join(words)


WORK_CUE = "Work:"  # the last prompt line of the worked format (the others end in "Answer:")


def format_prompt(rule_sentence: str, cards: list[tuple[str, int]], answer_format: str = "label") -> str:
    cue = WORK_CUE if answer_format == "worked" else "Answer:"
    lines = [f"Rule: {rule_sentence}", "Cards:", *(f"{colour} {number}" for colour, number in cards), "", cue]
    return "\n".join(lines)


def is_worked(prompt: str) -> bool:
    """Does ``prompt`` ask for a worked answer (several lines) rather than a one-line answer?"""
    return prompt.endswith(WORK_CUE)


def decision_text(example: dict) -> str:
    """The text after which the model states its answer: the prompt, and for a worked example also the
    reference work up to and including the final ``Answer:`` (teacher forcing: the analyses look at the
    decision with the steps right, not at whatever the model would have written)."""
    prompt = example["prompt"]
    if not is_worked(prompt):
        return prompt
    completion = example["completion"]
    return prompt + completion[: completion.rindex("Answer:") + len("Answer:")]


def format_answer(label: str, total: int, answer_format: str, worked: dict | None = None) -> str:
    """The completion; ``worked`` (the worked format only) holds ``rule`` (its :func:`rule_line`), ``cards``,
    ``selected``, ``contributions`` and ``threshold``."""
    if answer_format == "label":
        return f" {label}"
    if answer_format == "total_label":
        return f" {total} {label}"
    lines, running = [worked["rule"]], 0
    for (colour, number), selected, contribution in zip(
        worked["cards"], worked["selected"], worked["contributions"], strict=True
    ):
        running += contribution
        step = f"{contribution:+d}" if selected else "skip"
        lines.append(f"{colour} {number} {step} ={running}")
    comparison = ">" if label == "BIG" else "<="
    lines += [f"total {total} {comparison} {worked['threshold']}", f"Answer: {label}"]
    return "\n" + "\n".join(lines)


_ANSWER = re.compile(r"^\s*(?:(-?\d+)\s+)?(BIG|SMALL)\b")
_FINAL = re.compile(r"^Answer: (BIG|SMALL)$", re.MULTILINE)
_TOTAL = re.compile(r"^total (-?\d+) (>|<=) (-?\d+)$", re.MULTILINE)
_CARD = re.compile(r"^(\S+) (-?\d+) (?:([+-]\d+)|skip) =(-?\d+)$")
_RULE = re.compile(r"^rule (.+)$")


def parse_answer(text: str) -> tuple[int | None, str | None]:
    """(total or None, label or None) from generated text; anything unparseable gives (None, None). A one-line
    answer is read from the start of the text; a worked answer from its last ``Answer:`` and ``total`` lines
    (the steps before them are not read: :func:`parse_worked` reads those)."""
    match = _ANSWER.match(text)
    if match:
        total = int(match.group(1)) if match.group(1) is not None else None
        return total, match.group(2)
    finals, totals = _FINAL.findall(text), _TOTAL.findall(text)
    if not finals:
        return None, None
    return (int(totals[-1][0]) if totals else None), finals[-1]


def parse_worked(text: str) -> dict | None:
    """The intermediate labels a worked answer states — ``rule`` (the canonical line), ``cards``, ``selected``,
    ``contributions``, ``running`` (totals after each card), ``total``, ``threshold``, ``label`` — or None if
    it does not parse."""
    lines = text.strip("\n").split("\n")
    if len(lines) < 3 or not _RULE.match(lines[0]):
        return None
    cards, selected, contributions, running = [], [], [], []
    for line in lines[1:-2]:
        match = _CARD.match(line)
        if not match:
            return None
        cards.append((match.group(1), int(match.group(2))))
        selected.append(match.group(3) is not None)
        contributions.append(int(match.group(3)) if match.group(3) else 0)
        running.append(int(match.group(4)))
    total = _TOTAL.fullmatch(lines[-2])
    final = _FINAL.fullmatch(lines[-1])
    if not total or not final:
        return None
    return {
        "rule": lines[0],
        "cards": cards,
        "selected": selected,
        "contributions": contributions,
        "running": running,
        "total": int(total.group(1)),
        "threshold": int(total.group(3)),
        "label": final.group(1),
    }


def worked_steps_right(text: str, example: dict) -> bool:
    """Does the worked answer ``text`` state every intermediate label of ``example`` correctly (the rule line,
    cards copied, selection, contributions, running totals, total and threshold)?"""
    worked = parse_worked(text)
    if worked is None:
        return False
    cards = list(zip(example["colours"], example["numbers"], strict=True))
    running = [sum(example["contributions"][: i + 1]) for i in range(len(cards))]
    return (
        worked["rule"] == example["rule_line"]
        and worked["cards"] == cards
        and worked["selected"] == list(example["selected"])
        and worked["contributions"] == list(example["contributions"])
        and worked["running"] == running
        and worked["total"] == example["total"]
        and worked["threshold"] == example["threshold"]
    )


def check_length(n_tokens: int, max_length: int, what: str = "prompt + answer") -> None:
    if n_tokens > max_length:
        raise LMError(
            f"{what} is {n_tokens} tokens, longer than the context of {max_length} tokens "
            "(n_positions / max_length): use fewer cards or a model with a longer context"
        )
