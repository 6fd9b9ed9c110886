"""ARC evaluation (reasonlens.hrm.evaluation.arc_voting): inverse augmentation, voting with the q_halt tie-break,
pass@K under both scoring rules, the submission file, on small datasets built by the ARC builders."""

import json
import shutil

import numpy as np
import pytest

from reasonlens.hrm.data.arc import (
    ARCBuildConfig,
    augment_grid,
    build_arc_dataset,
    grid_to_tokens,
    parse_augmentation_name,
)
from reasonlens.hrm.data.arc_synthetic import SyntheticARCConfig, build_synthetic_arc_dataset
from reasonlens.hrm.data.format import load_identifiers, load_split
from reasonlens.hrm.evaluation.arc_voting import evaluate_arc_predictions, submission_from_evaluation, write_submission

NUM_AUG = 5  # 6 variants per task
WRONG = np.array([[9, 9], [9, 8]], dtype=np.uint8)


def write_task(folder, task_id, pairs, num_train):
    folder.mkdir(parents=True, exist_ok=True)
    items = [{"input": i.tolist(), "output": o.tolist()} for i, o in pairs]
    (folder / f"{task_id}.json").write_text(json.dumps({"train": items[:num_train], "test": items[num_train:]}))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """tr1: a training task; ev1: an evaluation task with 1 test input; ev2: with 2 test inputs."""
    root = tmp_path_factory.mktemp("arc_eval")
    rng = np.random.default_rng(0)

    def pairs(count):
        return [
            (rng.integers(0, 10, size=rng.integers(2, 7, size=2)), rng.integers(0, 10, size=rng.integers(2, 7, size=2)))
            for _ in range(count)
        ]

    write_task(root / "training", "tr1", pairs(3), 2)
    write_task(root / "evaluation", "ev1", pairs(3), 2)
    write_task(root / "evaluation", "ev2", pairs(4), 2)
    sources = [(str(root / "training"), "train"), (str(root / "evaluation"), "evaluation")]
    return build_arc_dataset(ARCBuildConfig(out_dir=root / "out", dataset=sources, num_aug=NUM_AUG, seed=3))


def split_rows(dataset):
    """[(puzzle id, name, task id, test index, input tokens, label tokens)] of the test split."""
    identifiers = load_identifiers(dataset)
    _, arrays = load_split(dataset, "test")
    rows = []
    for p, identifier in enumerate(arrays.puzzle_identifiers):
        name = identifiers[identifier]
        for index, row in enumerate(range(arrays.puzzle_indices[p], arrays.puzzle_indices[p + 1])):
            rows.append(
                (int(identifier), name, parse_augmentation_name(name)[0], index, arrays.inputs[row], arrays.labels[row])
            )
    return rows


def truth(dataset):
    return json.loads((dataset / "test_puzzles.json").read_text())


def fabricate(dataset, choose):
    """Predictions for every test row: ``choose(task, test index, variant number)`` gives an original-space
    grid (or None to drop the row) and a q_halt logit; the grid is encoded in the row's augmented space."""
    columns = {"inputs": [], "preds": [], "puzzle_identifiers": [], "q_halt_logits": []}
    variant_of = {}
    for identifier, name, task, index, inputs, _ in split_rows(dataset):
        variant = variant_of.setdefault((task, index), {}).setdefault(name, len(variant_of[(task, index)]))
        chosen = choose(task, index, variant)
        if chosen is None:
            continue
        grid, logit = chosen
        _, tid, mapping = parse_augmentation_name(name)
        columns["inputs"].append(inputs)
        columns["preds"].append(grid_to_tokens(augment_grid(np.asarray(grid, dtype=np.uint8), tid, mapping)))
        columns["puzzle_identifiers"].append(identifier)
        columns["q_halt_logits"].append(logit)
    return {key: np.array(value) for key, value in columns.items()}


def label(dataset, task, index):
    return np.array(truth(dataset)[task]["test"][index]["output"])


def test_perfect_label_predictions_score_one_under_both_rules(dataset):
    rows = split_rows(dataset)
    predictions = {
        "inputs": np.stack([r[4] for r in rows]),
        "preds": np.stack([r[5] for r in rows]),
        "puzzle_identifiers": np.array([r[0] for r in rows]),
        "q_halt_logits": np.zeros(len(rows)),
    }
    result = evaluate_arc_predictions(dataset, predictions)
    assert result["ks"] == [1, 2, 5, 10, 100, 1000]
    for rule in ("task_all_or_nothing", "per_test_input"):
        assert result[rule] == {f"pass@{k}": 1.0 for k in result["ks"]}
    assert result["headline"] == {"metric": "pass@2", "task_all_or_nothing": 1.0, "per_test_input": 1.0}
    assert (result["num_tasks"], result["num_test_inputs"], result["num_rows"]) == (2, 3, 3 * (NUM_AUG + 1))
    assert result["tasks"]["ev1"]["test_inputs"][0]["candidates"][0]["count"] == NUM_AUG + 1


def test_augmenting_the_true_outputs_by_name_reproduces_the_labels_and_is_undone(dataset):
    predictions = fabricate(dataset, lambda task, index, variant: (label(dataset, task, index), 0.0))
    assert np.array_equal(predictions["preds"], np.stack([r[5] for r in split_rows(dataset)]))
    result = evaluate_arc_predictions(dataset, predictions)
    assert result["task_all_or_nothing"]["pass@1"] == result["per_test_input"]["pass@1"] == 1.0
    assert result["num_unmatched_rows"] == 0


@pytest.mark.parametrize(("corrupted", "label_rank"), [(2, 0), (4, 1)])
def test_voting_follows_the_majority_of_variants(dataset, corrupted, label_rank):
    def choose(task, index, variant):
        wrong = task == "ev1" and variant < corrupted
        return (WRONG if wrong else label(dataset, task, index)), 0.0

    result = evaluate_arc_predictions(dataset, fabricate(dataset, choose))
    detail = result["tasks"]["ev1"]["test_inputs"][0]
    assert detail["label_rank"] == label_rank and detail["num_votes"] == NUM_AUG + 1
    assert [c["count"] for c in detail["candidates"]] == sorted([corrupted, NUM_AUG + 1 - corrupted], reverse=True)
    assert detail["candidates"][label_rank]["correct"] and not detail["candidates"][1 - label_rank]["correct"]
    assert detail["candidates"][1 - label_rank]["grid"] == WRONG.tolist()
    expected_pass1 = 1.0 if label_rank == 0 else 0.5  # ev2 is always solved
    assert result["task_all_or_nothing"]["pass@1"] == result["per_test_input"]["pass@1"] == expected_pass1
    assert result["task_all_or_nothing"]["pass@2"] == 1.0
    top = submission_from_evaluation(result)["ev1"][0]
    assert top["attempt_1"] == (WRONG.tolist() if label_rank else label(dataset, "ev1", 0).tolist())


@pytest.mark.parametrize("label_logit", [2.0, -2.0])
def test_equal_counts_are_broken_by_mean_sigmoid_q_halt(dataset, label_logit):
    def choose(task, index, variant):
        if task == "ev1" and variant % 2:
            return WRONG, -label_logit
        return label(dataset, task, index), label_logit

    result = evaluate_arc_predictions(dataset, fabricate(dataset, choose))
    candidates = result["tasks"]["ev1"]["test_inputs"][0]["candidates"]
    assert [c["count"] for c in candidates] == [3, 3]
    assert candidates[0]["correct"] == (label_logit > 0)
    assert candidates[0]["mean_q"] == pytest.approx(1 / (1 + np.exp(-2.0)))
    assert result["tasks"]["ev1"]["all_solved"]["pass@1"] == (label_logit > 0)
    assert result["tasks"]["ev1"]["all_solved"]["pass@2"]


@pytest.mark.parametrize("label_first", [True, False])
def test_full_ties_keep_the_order_of_first_appearance(dataset, label_first):
    def choose(task, index, variant):
        first = label(dataset, task, index) if label_first else WRONG
        second = WRONG if label_first else label(dataset, task, index)
        return (first if variant < 3 else second), 0.5

    result = evaluate_arc_predictions(dataset, fabricate(dataset, choose))
    assert result["tasks"]["ev1"]["test_inputs"][0]["label_rank"] == (0 if label_first else 1)


def test_the_two_scoring_rules_differ_on_a_half_solved_task(dataset):
    def choose(task, index, variant):  # ev2's second test input is always wrong
        return (WRONG if (task, index) == ("ev2", 1) else label(dataset, task, index)), 0.0

    result = evaluate_arc_predictions(dataset, fabricate(dataset, choose))
    assert result["tasks"]["ev2"]["all_solved"]["pass@2"] is False
    assert result["tasks"]["ev2"]["fraction_solved"]["pass@2"] == 0.5
    assert result["task_all_or_nothing"]["pass@2"] == 0.5  # (1 + 0) / 2 tasks
    assert result["per_test_input"]["pass@2"] == 0.75  # (1 + 0.5) / 2 tasks
    assert result["headline"] == {"metric": "pass@2", "task_all_or_nothing": 0.5, "per_test_input": 0.75}


def test_missing_padding_and_foreign_rows(dataset):
    predictions = fabricate(
        dataset, lambda task, index, variant: None if task == "ev2" else (label(dataset, task, index), 0.0)
    )
    identifiers = load_identifiers(dataset)
    extra = 3
    predictions["inputs"] = np.concatenate([predictions["inputs"], np.zeros((extra, 900), np.uint8)])
    predictions["preds"] = np.concatenate([predictions["preds"], np.ones((extra, 900), np.uint8)])
    predictions["puzzle_identifiers"] = np.concatenate(
        [predictions["puzzle_identifiers"], [0, 0, identifiers.index("tr1")]]
    )
    predictions["q_halt_logits"] = np.concatenate([predictions["q_halt_logits"], np.zeros(extra)])
    result = evaluate_arc_predictions(dataset, predictions, ks=[1, 3])
    assert (result["num_padding_rows"], result["num_unmatched_rows"]) == (2, 1)
    assert result["task_all_or_nothing"] == {"pass@1": 0.5, "pass@3": 0.5} and "headline" not in result
    assert result["tasks"]["ev2"]["test_inputs"][1]["num_votes"] == 0
    assert submission_from_evaluation(result)["ev2"] == [{"attempt_1": [[0]], "attempt_2": [[0]]}] * 2


def test_write_submission_pads_with_the_first_attempt(dataset, tmp_path):
    def choose(task, index, variant):
        return (WRONG if (task == "ev1" and variant == 0) else label(dataset, task, index)), 0.0

    result = evaluate_arc_predictions(dataset, fabricate(dataset, choose))
    path = write_submission(tmp_path / "out" / "submission.json", result)
    submission = json.loads(path.read_text())
    answers = truth(dataset)
    assert sorted(submission) == ["ev1", "ev2"] and len(submission["ev2"]) == 2
    assert submission["ev1"][0] == {"attempt_1": answers["ev1"]["test"][0]["output"], "attempt_2": WRONG.tolist()}
    only = answers["ev2"]["test"][1]["output"]
    assert submission["ev2"][1] == {"attempt_1": only, "attempt_2": only}  # one candidate: repeated
    assert [p.name for p in path.parent.iterdir()] == ["submission.json"]
    with pytest.raises(ValueError, match="num_attempts must lie in"):
        write_submission(tmp_path / "x.json", result, num_attempts=11)


def test_ground_truth_falls_back_to_the_test_split(dataset, tmp_path):
    copy = tmp_path / "no_test_puzzles"
    shutil.copytree(dataset, copy)
    (copy / "test_puzzles.json").unlink()

    def choose(task, index, variant):
        return (WRONG if (task, index) == ("ev2", 1) else label(dataset, task, index)), 0.0

    predictions = fabricate(dataset, choose)
    with_file, without = evaluate_arc_predictions(dataset, predictions), evaluate_arc_predictions(copy, predictions)
    assert with_file == without and without["per_test_input"]["pass@1"] == 0.75


def test_bad_predictions_raise_clear_errors(dataset):
    good = fabricate(dataset, lambda task, index, variant: (label(dataset, task, index), 0.0))
    with pytest.raises(ValueError, match=r"lack \['q_halt_logits'\]"):
        evaluate_arc_predictions(dataset, {k: v for k, v in good.items() if k != "q_halt_logits"})
    with pytest.raises(ValueError, match=r"predictions\['preds'\] has shape \(18, 899\), expected \(18, 900\)"):
        evaluate_arc_predictions(dataset, good | {"preds": good["preds"][:, :899]})
    with pytest.raises(ValueError, match="puzzle identifiers must lie in"):
        evaluate_arc_predictions(dataset, good | {"puzzle_identifiers": good["puzzle_identifiers"] + 1000})
    with pytest.raises(ValueError, match="ks must be positive"):
        evaluate_arc_predictions(dataset, good, ks=[0, 2])


def test_synthetic_dataset_end_to_end_with_corrupted_variants(tmp_path):
    dataset = build_synthetic_arc_dataset(
        SyntheticARCConfig(out_dir=tmp_path / "syn", num_tasks=14, num_aug=4, seed=2, evaluation_fraction=0.5)
    )
    answers = truth(dataset)
    identifiers = load_identifiers(dataset)
    _, arrays = load_split(dataset, "test")
    puzzle_of_row = np.repeat(arrays.puzzle_identifiers, np.diff(arrays.puzzle_indices))
    preds = []
    corrupted_task = next(iter(answers))
    for row, identifier in enumerate(puzzle_of_row):
        name = identifiers[identifier]
        task, tid, mapping = parse_augmentation_name(name)
        grid = np.array(answers[task]["test"][0]["output"], dtype=np.uint8)
        if task == corrupted_task and name != task and row % 2:  # 2 of its 4 augmented variants are wrong
            grid = (grid + 1) % 10
        preds.append(grid_to_tokens(augment_grid(grid, tid, mapping), canvas_size=10))
    predictions = {
        "inputs": np.asarray(arrays.inputs),
        "preds": np.stack(preds),
        "puzzle_identifiers": puzzle_of_row,
        "q_halt_logits": np.zeros(len(preds)),
    }
    result = evaluate_arc_predictions(dataset, predictions)
    assert result["num_tasks"] == 7 and result["num_unmatched_rows"] == 0
    assert result["task_all_or_nothing"]["pass@1"] == 1.0  # the corrupted task still has a majority
    counts = [c["count"] for c in result["tasks"][corrupted_task]["test_inputs"][0]["candidates"]]
    assert counts == [3, 2]
