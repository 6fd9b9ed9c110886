"""``reasonlens solve``: one Sudoku puzzle through a checkpoint, ACT step by ACT step — every ACT step printed
with its Q values, the JSON consistent with itself and with the rules, real pictures, a verdict by the rules
that follows what the model outputs, and careless input as one line."""

import json
import shutil

import numpy as np
import pytest
import torch
import yaml
from conftest import assert_real_picture, tiny_hrm_config
from PIL import Image
from typer.testing import CliRunner

from reasonlens.cli.main import app
from reasonlens.hrm import TRM, HRMACTv1, export_official_checkpoint, save_checkpoint
from reasonlens.hrm.data.sudoku import encode_board
from reasonlens.hrm.data.sudoku_solver import generate_puzzle, is_valid_solution
from reasonlens.hrm.evaluation.solve import SolveError, parse_puzzle, read_puzzle, solve_puzzle
from reasonlens.hrm.models.hrm_act_v1 import ACTModel

runner = CliRunner()


def as_text(board) -> str:
    return "".join(str(v) if v else "." for v in np.asarray(board).reshape(-1))


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    """A tiny untrained 9×9 HRM (ours and official), one generated puzzle with its solution, a puzzle file."""
    root = tmp_path_factory.mktemp("solve")
    torch.manual_seed(0)
    model = HRMACTv1(tiny_hrm_config(seq_len=81, vocab_size=11, halt_max_steps=3))
    save_checkpoint(model, root / "run")
    export_official_checkpoint(model, root / "official")
    puzzle, solution, _ = generate_puzzle(9, rng=0)
    (root / "puzzles.txt").write_text(
        f"# two puzzles\n\n{as_text(np.zeros((9, 9), int))}\n{as_text(puzzle)},{as_text(solution)}\n"
    )
    (root / "bad.txt").write_text("# one bad line\n" + "." * 80 + "\n")
    return {"root": root, "puzzle": puzzle, "solution": solution, "text": as_text(puzzle)}


def invoke(place, *args):
    result = runner.invoke(app, ["solve", str(place["root"] / "run"), *map(str, args)])
    assert result.exit_code == 0, result.output
    return result.output


def test_prints_every_act_step_with_q_values(place, tmp_path):
    output = invoke(place, place["text"], "--max-steps", 5, "--json", tmp_path / "s.json")
    data = json.loads((tmp_path / "s.json").read_text())
    assert [s["act_step"] for s in data["steps"]] == [1, 2, 3, 4, 5]  # past the trained 3: scaling
    for step in data["steps"]:
        line = next(line for line in output.splitlines() if line.startswith(f"ACT step {step['act_step']}/5 "))
        assert f"q_halt {step['q_halt']:+.3f}" in line and f"q_continue {step['q_continue']:+.3f}" in line
        assert f"would halt: {'yes' if step['would_halt'] else 'no'}" in line
    assert "ACT step 6" not in output
    assert "\x1b[" not in output  # plain text when not a terminal
    assert "valid: false" in output  # an untrained model does not solve it
    assert output.count("\n   ") >= 5 * 9  # a board of nine rows per ACT step


def test_default_is_the_trained_number_of_act_steps(place, tmp_path):
    invoke(place, place["text"], "--json", tmp_path / "s.json")
    assert json.loads((tmp_path / "s.json").read_text())["act_steps"] == 3


def test_json_is_consistent_with_itself_and_the_rules(place, tmp_path):
    invoke(place, place["root"] / "puzzles.txt", "--index", 1, "--max-steps", 4, "--json", tmp_path / "s.json")
    data = json.loads((tmp_path / "s.json").read_text())
    puzzle = np.array(data["puzzle"])
    assert np.array_equal(puzzle, place["puzzle"]) and data["source"].endswith("puzzles.txt:4")
    previous = puzzle
    for step in data["steps"]:
        grid = np.array(step["grid"])
        assert grid.shape == (9, 9) and grid.min() >= 0 and grid.max() <= 9
        assert sorted(map(tuple, step["changed"])) == sorted(map(tuple, np.argwhere(grid != previous).tolist()))
        overwritten = np.argwhere((puzzle > 0) & (grid != puzzle)).tolist()
        assert step["overwritten_givens"] == overwritten  # a given the model changed is reported, not hidden
        assert step["valid"] == (not overwritten and is_valid_solution(grid))
        previous = grid
    assert data["final_grid"] == data["steps"][-1]["grid"]
    assert data["valid_grid"] == is_valid_solution(np.array(data["final_grid"]))
    assert data["valid"] == (data["valid_grid"] and data["keeps_givens"])
    would = [s["act_step"] for s in data["steps"] if s["would_halt"]]
    assert data["halted_at"] == (would[0] if would else None)


def test_official_checkpoint_gives_the_same_steps(place, tmp_path):
    invoke(place, place["text"], "--json", tmp_path / "ours.json")
    result = runner.invoke(
        app, ["solve", str(place["root"] / "official"), place["text"], "--json", tmp_path / "o.json"]
    )
    assert result.exit_code == 0, result.output
    ours, official = (json.loads((tmp_path / n).read_text())["steps"] for n in ("ours.json", "o.json"))
    assert [s["grid"] for s in ours] == [s["grid"] for s in official]
    assert [s["q_halt"] for s in ours] == pytest.approx([s["q_halt"] for s in official])


def test_official_checkpoint_without_a_recorded_seq_len(place, tmp_path):
    """Rotary positions and no dataset: nothing records seq_len, so the puzzle's n² is used."""
    folder = tmp_path / "bare"
    shutil.copytree(place["root"] / "official", folder)
    config = yaml.safe_load((folder / "all_config.yaml").read_text())
    del config["reasonlens"]
    config["data_path"] = "nowhere"
    (folder / "all_config.yaml").write_text(yaml.safe_dump(config))
    result = runner.invoke(app, ["solve", str(folder), place["text"], "--max-steps", "1"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["solve", str(folder), "." * 16])
    assert result.exit_code == 2 and "it fits 9×9 puzzles (81 characters)" in result.output


def test_pictures_are_real(place, tmp_path):
    invoke(place, place["text"], "--max-steps", 4, "--png", tmp_path / "s.png", "--gif", tmp_path / "s.gif")
    assert_real_picture(tmp_path / "s.png")
    assert_real_picture(tmp_path / "s.gif")
    with Image.open(tmp_path / "s.gif") as gif:
        assert gif.n_frames == 4


def answer_model(monkeypatch, answers):
    """Make every ACT model output ``answers[s]`` (a 9×9 grid) at ACT step s + 1, as confident logits; the
    carry and the Q values stay the model's own."""
    forward = ACTModel.forward

    def fake(self, carry, batch):
        carry, outputs = forward(self, carry, batch)
        tokens = torch.as_tensor(encode_board(answers[int(carry.steps[0]) - 1]).astype(np.int64))
        outputs["logits"] = 10 * torch.nn.functional.one_hot(tokens, 11).float()[None]  # (1, 81, 11)
        return carry, outputs

    monkeypatch.setattr(ACTModel, "forward", fake)


def test_the_true_solution_is_valid_and_a_wrong_one_is_not(place, tmp_path, monkeypatch):
    puzzle, solution = place["puzzle"], place["solution"]
    blanks = np.argwhere(puzzle == 0)
    wrong = solution.copy()
    (r1, c1), (r2, c2) = next((a, b) for a in blanks for b in blanks if solution[tuple(a)] != solution[tuple(b)])
    wrong[r1, c1], wrong[r2, c2] = solution[r2, c2], solution[r1, c1]  # two filled cells swapped
    answer_model(monkeypatch, [wrong, solution, solution])
    output = invoke(place, place["text"], "--json", tmp_path / "s.json")
    data = json.loads((tmp_path / "s.json").read_text())
    assert [s["valid"] for s in data["steps"]] == [False, True, True]
    assert sorted(map(tuple, data["steps"][1]["changed"])) == sorted([(r1, c1), (r2, c2)])
    assert data["steps"][2]["changed"] == []
    assert data["valid"] is True and data["final_grid"] == solution.tolist()
    assert "valid: true" in output
    assert output.count("(a solution)") == 2

    answer_model(monkeypatch, [solution, solution, wrong])  # right, then talked out of it
    output = invoke(place, place["text"], "--json", tmp_path / "s.json")
    assert json.loads((tmp_path / "s.json").read_text())["valid"] is False
    assert "valid: false" in output and "appears twice" in output


def test_a_valid_grid_that_changes_a_given_is_not_a_solution(place, tmp_path, monkeypatch):
    relabelled = place["solution"] % 9 + 1  # still a valid grid, but every given changed
    answer_model(monkeypatch, [relabelled] * 3)
    output = invoke(place, place["text"], "--json", tmp_path / "s.json")
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["valid_grid"] is True and data["keeps_givens"] is False and data["valid"] is False
    assert "valid: false (row" in output and "is given as" in output
    assert any(line.startswith("   ") and "!" in line for line in output.splitlines())  # marked on the board


def test_library_rollout_and_trm_halting_rule():
    torch.manual_seed(1)
    model = TRM(tiny_hrm_config(seq_len=16, vocab_size=6, halt_max_steps=2))
    puzzle = parse_puzzle("1.3. .... ..4. ...2")
    rollout = solve_puzzle(model, puzzle, max_steps=3)
    assert rollout.halting_rule == "q_halt > 0" and len(rollout.steps) == 3
    assert all(step.would_halt == (step.q_halt > 0) for step in rollout.steps)
    assert model.config.halt_max_steps == 2  # restored after the longer rollout


def test_reading_puzzles(place):
    assert np.array_equal(parse_puzzle(" ".join(place["text"])), place["puzzle"])  # whitespace ignored
    assert np.array_equal(parse_puzzle(place["text"].replace(".", "0")), place["puzzle"])
    board, where = read_puzzle(str(place["root"] / "puzzles.txt"), 0)
    assert not board.any() and where.endswith("puzzles.txt:3")  # comments and blank lines skipped
    with pytest.raises(SolveError, match="digit 5 at position 1 of the puzzle is not allowed in a 4×4 Sudoku"):
        parse_puzzle("5" + "." * 15)


BAD = [
    (["{run}", "." * 80], "the puzzle has 80 characters; a puzzle has 81 characters"),
    (
        ["{run}", "x" + "." * 80],
        "invalid character 'x' at position 1 of the puzzle; allowed: '.' or '0' for a blank and digits 1-9",
    ),
    (["{run}", "11" + "." * 79], "the givens break the rules: digit 1 appears twice in row 1"),
    (["{run}", "{root}/missing.txt"], "missing.txt: no such puzzle file"),
    (["{run}", "{root}/bad.txt"], "{root}/bad.txt:2: the puzzle has 80 characters; a puzzle has 81"),
    (
        ["{run}", "{root}/puzzles.txt", "--index", "2"],
        "--index 2 is out of range: {root}/puzzles.txt holds 2 puzzles (0..1)",
    ),
    (["{run}", "{root}/puzzles.txt", "--index", "-1"], "--index -1 is out of range"),
    (["{run}", "{text}", "--index", "1"], "--index 1 picks a line of a puzzle file"),
    (["{root}/nothing", "{text}"], "checkpoint not found"),
    (
        ["{run}", "." * 16],
        "is not a 4×4 Sudoku model: that has vocab_size 6 and seq_len 16, this one has vocab_size 11 and seq_len 81; "
        "it fits 9×9 puzzles (81 characters)",
    ),
    (["{run}", "{text}", "--max-steps", "0"], "max steps must be a whole number >= 1"),
    (["{run}", "{text}", "--json", "{root}/puzzles.txt/out.json"], "puzzles.txt is a file, not a folder"),
    (["{run}", "{text}", "--png", "{root}"], "is a folder; give the name of a file to write"),
    (["{run}", "{text}", "--rollouts", "0"], "--rollouts must be at least 1"),
    (["{run}", "{text}", "--rollouts", "4", "--select", "best"], "--select 'best' is unknown; allowed: vote, q"),
    (["{run}", "{text}", "--rollouts", "4", "--noise", "-1"], "--noise must be >= 0"),
]


@pytest.mark.parametrize(("args", "expected"), BAD, ids=[e[:40] for _, e in BAD])
def test_careless_input_is_one_line(place, args, expected):
    names = {"run": place["root"] / "run", "root": place["root"], "text": place["text"]}
    before = sorted(place["root"].rglob("*"))
    result = runner.invoke(app, ["solve", *(a.format(**names) for a in args)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected.format(**names) in lines[0], result.output
    assert not isinstance(result.exception, Exception)
    assert sorted(place["root"].rglob("*")) == before  # nothing written


def test_rollouts_choose_an_answer_judged_by_the_rules(place, tmp_path):
    output = invoke(place, place["text"], "--rollouts", 4, "--select", "q", "--json", tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    chosen = data["perturbed"]
    assert chosen["rollouts"] == 4 and len(chosen["per_rollout"]) == 4
    q = [r["q_halt_sigmoid"] for r in chosen["per_rollout"]]
    assert chosen["chosen"] == q.index(max(q)) + 1
    grid = np.asarray(chosen["grid"])
    assert chosen["valid"] == (
        is_valid_solution(grid) and bool((grid[place["puzzle"] > 0] == place["puzzle"][place["puzzle"] > 0]).all())
    )
    assert f"4 rollouts (Sudoku symmetries): {chosen['distinct_answers']} distinct answers" in output
