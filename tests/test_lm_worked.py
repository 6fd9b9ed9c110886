"""The worked-answer format of the card game (issue [K]): exact text, round trips back into the generator's
intermediate labels, rewards and scores that read the final answer only, and OOD sets that stay OOD."""

from __future__ import annotations

import random

import pytest

from reasonlens.lm.config.task_config import OOD_CATEGORIES, TaskConfig
from reasonlens.lm.envs.text_game_env import TextGameEnv
from reasonlens.lm.models.policy_wrappers import completion_budget
from reasonlens.lm.tasks.formatting import is_worked, parse_answer, parse_worked, worked_steps_right
from reasonlens.lm.tasks.generators import make_example
from reasonlens.lm.tasks.rules import Rule, rule_from_name
from reasonlens.lm.training.evaluation import score_completion

WORKED = TaskConfig(answer_format="worked", max_length=192)


def worked_example(rule: Rule, cards, threshold: int) -> dict:
    return make_example(WORKED, random.Random(0), rule=rule, cards=cards, threshold=threshold, template=0)


def test_worked_answer_text():
    example = worked_example(Rule("sum_a_minus_b", ("RED",), ("BLUE",)), [("RED", 3), ("BLUE", 5), ("GREEN", 9)], 1)
    assert example["prompt"].endswith("Cards:\nRED 3\nBLUE 5\nGREEN 9\n\nWork:") and is_worked(example["prompt"])
    assert example["completion"] == (
        "\nrule sum RED minus BLUE\nRED 3 +3 =3\nBLUE 5 -5 =-2\nGREEN 9 skip =-2\ntotal -2 <= 1\nAnswer: SMALL"
    )
    count = worked_example(Rule("count_predicate", (), (), "odd", "count"), [("RED", 3), ("BLUE", 4)], 0)
    assert count["completion"] == "\nrule count odd\nRED 3 +1 =1\nBLUE 4 skip =1\ntotal 1 > 0\nAnswer: BIG"
    rule = Rule("sum_colour_predicate", ("GREEN",), (), "gt_5")
    assert worked_example(rule, [("GREEN", 7)], 3)["completion"].startswith("\nrule sum GREEN greater than 5\n")
    assert not is_worked(make_example(TaskConfig(), random.Random(0))["prompt"])


@pytest.mark.parametrize("distribution", ["id", *OOD_CATEGORIES])
def test_worked_answers_parse_back_into_the_labels(distribution):
    rng = random.Random(distribution)
    for _ in range(200):
        example = make_example(WORKED, rng, distribution)
        worked = parse_worked(example["completion"])
        assert worked["rule"] == example["rule_line"]
        assert worked["cards"] == list(zip(example["colours"], example["numbers"], strict=True))
        assert worked["selected"] == example["selected"]
        assert worked["contributions"] == example["contributions"]
        assert worked["running"][-1] == worked["total"] == example["total"]
        assert (worked["threshold"], worked["label"]) == (example["threshold"], example["label"])
        assert worked_steps_right(example["completion"], example)
        assert parse_answer(example["completion"]) == (example["total"], example["label"])


def test_a_wrong_step_is_scored_apart_from_the_answer():
    example = worked_example(Rule("sum_colour", ("RED",)), [("RED", 3), ("BLUE", 5), ("RED", 4)], 5)
    right = example["completion"]
    wrong_step = right.replace("RED 4 +4 =7", "RED 4 +4 =8")  # a running total off by one, the answer kept
    assert wrong_step != right
    assert score_completion(right, example) == {
        "correct": True,
        "parsed": True,
        "total_correct": True,
        "steps_correct": True,
    }
    assert (
        score_completion(wrong_step, example)["correct"] and not score_completion(wrong_step, example)["steps_correct"]
    )
    wrong_rule = right.replace("rule sum RED", "rule sum BLUE")  # misread rule, steps and answer right
    assert (
        score_completion(wrong_rule, example)["correct"] and not score_completion(wrong_rule, example)["steps_correct"]
    )
    wrong_answer = right.replace("Answer: BIG", "Answer: SMALL")
    assert score_completion(wrong_answer, example)["steps_correct"] is True  # the steps are all right ...
    assert not score_completion(wrong_answer, example)["correct"]  # ... but the answer is what counts
    assert parse_worked("\nRED 3 +3 =3\nAnswer: BIG") is None  # no total line: not a worked answer
    label_example = make_example(TaskConfig(), random.Random(0))
    assert score_completion(f" {label_example['label']}", label_example)["steps_correct"] is None


def test_rewards_read_the_final_answer_only():
    env = TextGameEnv(WORKED, seed=0)
    _, info = env.reset(seed=3)
    example = info["example"]
    label, other = example["label"], "SMALL" if example["label"] == "BIG" else "BIG"
    assert env.score(example["completion"], example) == 1.0
    nonsense_steps = f"\nPINK 99 +1 =5\ntotal 0 > 0\nAnswer: {label}"  # wrong steps, right final answer
    assert env.score(nonsense_steps, example) == 1.0
    assert env.score(example["completion"].replace(f"Answer: {label}", f"Answer: {other}"), example) == 0.0
    assert env.score(f"\nAnswer: {other}\nAnswer: {label}", example) == 1.0  # the last answer line counts
    assert env.score(f"\nAnswer: {label}\nAnswer: {other}", example) == 0.0
    assert env.score(f"\ntotal 3 > 1\n{label}", example) == 0.0  # no answer line: no answer
    assert completion_budget("worked") > completion_budget("label")


def test_unseen_colour_cards_must_be_selected_by_the_unseen_word():
    rng = random.Random(5)
    for _ in range(300):
        example = make_example(WORKED, rng, "unseen_colour")
        unseen = [
            selected
            for colour, selected in zip(example["colours"], example["selected"], strict=True)
            if colour in WORKED.unseen_colours
        ]
        assert unseen  # a card of the unseen colour is there ...
        if rule_from_name(example["rule"], WORKED).predicate is None:
            assert all(unseen)  # ... and, unless a predicate rules it out, a worked answer must select it
        train = make_example(WORKED, rng, "id")
        assert not set(train["colours"]) & set(WORKED.unseen_colours)  # training never shows the colour


def test_analyses_look_at_the_decision_after_the_worked_steps():
    """A worked example is analysed at its final ``Answer:`` with the reference steps before it; the answer
    is one token, and the colour word is one token in the rule and on the card lines."""
    from reasonlens.lm.analysis.hooks import PromptSet
    from reasonlens.lm.models.tokenizer import train_tokenizer
    from reasonlens.lm.tasks.formatting import decision_text

    rng = random.Random(1)
    examples = [make_example(WORKED, rng) for _ in range(40)]
    tokenizer = train_tokenizer(e["prompt"] + e["completion"] for e in examples)
    example = worked_example(Rule("sum_colour", ("RED",)), [("RED", 3), ("BLUE", 5), ("RED", 4)], 5)
    text = decision_text(example)
    assert text == example["prompt"] + "\nrule sum RED\nRED 3 +3 =3\nBLUE 5 skip =3\nRED 4 +4 =7\ntotal 7 > 5\nAnswer:"
    prompts = PromptSet.build(tokenizer, [example, *examples[:3]], 192)
    row = prompts.input_ids[0][prompts.attention_mask[0].bool()]
    assert tokenizer.decode(row) == text
    assert tokenizer.decode(prompts.input_ids[0, prompts.positions["final"][0]]) == ":"
    assert tokenizer.decode(prompts.input_ids[0, prompts.positions["cards_end"][0]]) == "4"
    assert tokenizer.decode([int(prompts.correct[0])]) == " BIG"
    assert tokenizer.convert_ids_to_tokens(row.tolist()).count("RED") == 6  # rule, two cards, rule line, two work lines
