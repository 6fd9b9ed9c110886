"""Why recurrent reasoners fail (issue [J]) on maps with known answers: a contracting map has one fixed point
and a negative exponent, two attractors give two answers from two starts, a rotation cycles; halting by a
Q head that always halts is step-1 accuracy; the symmetries are exact inverses and K = 1 is the plain
evaluation."""

import json
import math

import numpy as np
import pytest
import torch
from conftest import assert_real_picture, tiny_hrm_config, train_tiny_sudoku
from torch import nn
from typer.testing import CliRunner

from reasonlens.cli.evaluate import run_evaluation
from reasonlens.cli.main import app
from reasonlens.hrm import TRM, HRMACTv1, TransformerACT
from reasonlens.hrm.analysis import dynamics, fixed_points, halting, lyapunov
from reasonlens.hrm.data.format import dihedral_transform
from reasonlens.hrm.data.sudoku import apply_transform, encode_board, random_transform
from reasonlens.hrm.data.sudoku_solver import generate_puzzle
from reasonlens.hrm.evaluation import perturbed
from reasonlens.hrm.models.hrm_act_v1 import ACTModel, RecurrentCore
from reasonlens.interp import InterpError
from reasonlens.utils.stats import paired_bootstrap, roc_auc

runner = CliRunner()

# ------------------------------------------------------------------------------------- hand-built maps


class MapLevel(nn.Module):
    """A reasoning module computing ``rule(z)``: hookable, so the engine's noise patches reach it."""

    def __init__(self, rule):
        super().__init__()
        self.rule = rule

    def forward(self, z, injection, cos_sin=None):
        return self.rule(z)


def rotation(hidden: int) -> torch.Tensor:
    """(hidden, hidden) a quarter turn in each plane (0, 1), (2, 3), …: period 4, norm-preserving."""
    turn = torch.zeros(hidden, hidden)
    for i in range(0, hidden, 2):
        turn[i, i + 1], turn[i + 1, i] = -1.0, 1.0
    return turn


RULES = {  # name -> (rule of z_H, rule of z_L)
    "contracting": (lambda z: 0.5 * z + 1.0, lambda z: 0.5 * z),  # fixed point z_H = 2: every cell answers 1
    "two_attractors": (lambda z: torch.tanh(3 * z), lambda z: 0.5 * z),  # ±0.995 per unit, by the start's sign
    "rotation": (lambda z: z @ rotation(z.shape[-1]).T, lambda z: z),
}


def map_model(name: str, seq_len: int = 4) -> ACTModel:
    """An ACT model whose segment map is the hand-built rule ``name``: one z_L then one z_H update per ACT
    step, the answer token 1 where unit 0 of z_H is positive and 2 where it is negative."""
    rule_h, rule_l = RULES[name]

    class MapCore(RecurrentCore):
        def build_levels(self):
            self.L_level = MapLevel(rule_l)
            self.H_level = MapLevel(rule_h)

        def recur(self, z_H, z_L, x, cos_sin):
            z_L = self.L_level(z_L, x)
            return self.H_level(z_H, z_L), z_L

    class MapModel(ACTModel):
        inner_class = MapCore

    config = tiny_hrm_config(
        seq_len=seq_len, vocab_size=3, hidden_size=4, num_heads=1, puzzle_emb_ndim=0, H_cycles=1, L_cycles=1
    )
    model = MapModel(config).eval()
    with torch.no_grad():
        model.inner.lm_head.weight.zero_()
        model.inner.lm_head.weight[1, 0], model.inner.lm_head.weight[2, 0] = 1.0, -1.0
        model.inner.H_init.fill_(0.3)  # every cell starts on the positive side
    return model


def batches_of(rows: int, seq_len: int = 4, label: int = 1, chunk: int = 8) -> list[dict]:
    return [
        {
            "inputs": torch.ones(min(chunk, rows - s), seq_len, dtype=torch.int32),
            "labels": torch.full((min(chunk, rows - s), seq_len), label, dtype=torch.int32),
            "puzzle_identifiers": torch.zeros(min(chunk, rows - s), dtype=torch.int32),
        }
        for s in range(0, rows, chunk)
    ]


def test_contracting_map_settles_to_one_fixed_point_with_a_negative_exponent():
    model = map_model("contracting")
    report, _ = fixed_points.settling(model, batches_of(10), steps=40, tolerance=1e-6)
    counts = {row["class"]: row["count"] for row in report["classes"]}
    assert counts == {"settled-correct": 10, "settled-wrong": 0, "cycling": 0, "wandering": 0}
    guesses = fixed_points.guessing(model, batches_of(10), steps=40, starts=4, std=3.0)
    assert guesses["distinct_answers"] == {"1": 10}  # every start ends at the same answer
    exponent = lyapunov.lyapunov(model, batches_of(10), steps=12)
    assert exponent["solved"]["median"] == pytest.approx(math.log(0.5), abs=1e-5)  # every direction halves
    assert exponent["primal_error"] < 1e-6  # the jvp's map is the rollout's step


def test_two_attractors_give_two_answers_from_two_starts():
    model = map_model("two_attractors", seq_len=1)
    guesses = fixed_points.guessing(model, batches_of(16, seq_len=1), steps=30, starts=8, std=2.0, seed=3)
    assert guesses["mean_distinct_answers"] > 1.5  # both attractors reached from most puzzles' 8 starts
    assert set(guesses["distinct_answers"]) <= {"1", "2"}  # and never a third answer
    assert guesses["clean_exact"] == 1.0  # the clean start is on the positive side: answer 1, right
    assert 0 < guesses["mean_start_exact"] < 1
    _, clean = fixed_points.settling(model, batches_of(16, seq_len=1), steps=40)  # longer than guessing's 30
    reused = fixed_points.guessing(model, batches_of(16, seq_len=1), steps=30, starts=8, std=2.0, seed=3, clean=clean)
    assert reused == guesses  # the settling run's first 30 segments are the clean start
    report, _ = fixed_points.settling(model, batches_of(4, seq_len=1, label=2), steps=30)
    assert {row["class"]: row["count"] for row in report["classes"]}["settled-wrong"] == 4  # a false fixed point
    assert report["failure_shares"]["settled-wrong"] == 1.0


def test_rotation_cycles_with_period_four_and_a_zero_exponent():
    model = map_model("rotation")
    report, _ = fixed_points.settling(model, batches_of(6), steps=24, max_period=6)
    assert {row["class"]: row["count"] for row in report["classes"]}["cycling"] == 6
    assert report["periods"] == {4: 6}
    exponent = lyapunov.lyapunov(model, batches_of(6), steps=8, burn_in=0)
    assert abs(exponent["failed"]["median"] if exponent["failed"] else exponent["solved"]["median"]) < 1e-5


@pytest.mark.parametrize("arch", [HRMACTv1, TRM, TransformerACT])
def test_the_segment_map_is_the_rollouts_act_step_for_every_family(arch):
    torch.manual_seed(0)
    model = arch(tiny_hrm_config(seq_len=4, vocab_size=4, halt_max_steps=3)).eval()
    inputs = torch.randint(1, 4, (5, 4), dtype=torch.int32)
    batch = {"inputs": inputs, "labels": inputs, "puzzle_identifiers": torch.zeros(5, dtype=torch.int32)}
    report = lyapunov.lyapunov(model, [batch], steps=3, burn_in=0)
    assert report["primal_error"] < 1e-4  # the jvp's F(z_t) is the rollout's z_{t+1} (attention kernels differ)
    assert all(math.isfinite(row["lambda1"]) for row in report["per_puzzle"])


def test_wandering_when_no_lag_returns():
    lags = torch.full((4, 3, 8), 0.5)  # (window, N, max_period): nothing comes back
    lags[:, 1, 0] = 0.0  # puzzle 1 is still
    lags[:, 2, 2] = 1e-5  # puzzle 2 returns every 3 segments
    classes, periods = fixed_points.classify(lags, torch.tensor([False, True, False]), tolerance=1e-3)
    assert classes == ["wandering", "settled-correct", "cycling"]
    assert periods.tolist() == [0, 1, 3]


def test_one_blank_batches_blank_exactly_one_scored_cell_of_the_solution():
    labels = torch.tensor([[2, 3, 4, 5], [5, 4, -100, 2]], dtype=torch.int32)
    batch = {"inputs": torch.ones(2, 4, dtype=torch.int32), "labels": labels, "puzzle_identifiers": torch.zeros(2)}
    (probe,) = fixed_points.one_blank_batches([batch], seed=1)
    differs = probe["inputs"] != labels
    assert differs.sum(1).tolist() == [1, 1]
    assert (probe["inputs"][differs] == fixed_points.SUDOKU_BLANK).all()
    assert not differs[1, 2]  # an ignored cell is never the blank one
    assert torch.equal(probe["labels"], labels)


def test_difficulty_bands_cut_by_cells_to_fill():
    labels = torch.full((6, 10), 2)
    inputs = labels.clone()
    for row, blanks in enumerate([1, 1, 5, 5, 9, 9]):
        inputs[row, :blanks] = 1
    assert fixed_points.difficulty_bands(inputs, labels) == ["fill 1–1"] * 2 + ["fill 5–5"] * 2 + ["fill 9–9"] * 2


def test_settling_needs_enough_steps_for_its_window():
    with pytest.raises(InterpError, match="too few"):
        fixed_points.settling(map_model("contracting"), batches_of(2), steps=5, window=4, max_period=8)


# ------------------------------------------------------------------------------------------------ halting


def test_q_halting_with_a_head_that_always_halts_is_step_one_accuracy():
    torch.manual_seed(0)
    model = HRMACTv1(tiny_hrm_config(seq_len=4, vocab_size=4, halt_max_steps=4)).eval()
    with torch.no_grad():
        model.inner.q_head.weight.zero_()
        model.inner.q_head.bias.copy_(torch.tensor([5.0, -5.0]))  # q_halt > q_continue at every step
    inputs = torch.randint(1, 4, (12, 4), dtype=torch.int32)
    probe = {"inputs": inputs, "labels": inputs.clone(), "puzzle_identifiers": torch.zeros(12, dtype=torch.int32)}
    first = dynamics.rollout(model, [probe], 4).logits.argmax(-1)  # (steps, N, cells)
    labels = torch.where(torch.arange(12).view(-1, 1) < 6, first[0], first[-1])  # half right at step 1
    batch = {**probe, "labels": labels.to(torch.int32)}
    trajectories = dynamics.rollout(model, [batch], 4)
    report = halting.halting_report(trajectories)
    step_one = (first[0] == labels).all(-1).float().mean()
    assert report["q_halting"]["exact"] == pytest.approx(float(step_one))
    assert report["q_halting"]["mean_steps"] == 1.0
    assert report["q_halting"]["halting_steps"] == {"1": 12, "2": 0, "3": 0, "4": 0}
    assert report["fixed"]["exact"] == pytest.approx(float((first[-1] == labels).all(-1).float().mean()))
    assert report["classifier"]["recall"] == 1.0  # it halts everywhere, so every right answer is caught


def test_classifier_scores_and_calibration_by_hand():
    predicted = torch.tensor([True, True, False, False])
    actual = torch.tensor([True, False, True, False])
    scores = halting.classifier_scores(predicted, actual)
    assert (scores["precision"], scores["recall"], scores["f1"]) == (0.5, 0.5, 0.5)
    rows = halting.calibration_curve(torch.tensor([0.05, 0.05, 0.95, 0.95]), torch.tensor([False, False, True, False]))
    assert [(r["count"], r["observed"]) for r in rows] == [(2, 0.0), (2, 0.5)]


def test_roc_auc_and_paired_bootstrap_by_hand():
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == pytest.approx(0.75)
    assert roc_auc([1, 1], [True, False]) == 0.5
    assert roc_auc([1, 2], [True, True]) is None
    low, high = paired_bootstrap(np.ones(50), np.zeros(50))
    assert low == high == 1.0


# ----------------------------------------------------------------------------------- perturbed rollouts


@pytest.mark.parametrize("seed", range(5))
def test_sudoku_symmetry_is_the_official_transform_and_inverts_exactly(seed):
    puzzle, solution, _ = generate_puzzle(9, np.random.default_rng(seed), target_clues=30)
    symmetry = perturbed.sudoku_symmetry(9, 11, np.random.default_rng(seed))
    transform = random_transform(9, np.random.default_rng(seed))  # the same draws
    tokens = torch.as_tensor(encode_board(puzzle)[None].astype(np.int64))
    moved = symmetry.apply(tokens)
    assert np.array_equal(moved[0].numpy(), encode_board(apply_transform(puzzle, transform)))
    assert torch.equal(symmetry.invert(moved), tokens)
    # the transformed puzzle's solution maps back to the original's
    moved_solution = torch.as_tensor(encode_board(apply_transform(solution, transform))[None].astype(np.int64))
    assert np.array_equal(symmetry.invert(moved_solution)[0].numpy(), encode_board(solution))


def test_maze_symmetries_are_the_dihedral_maps_and_invert_exactly():
    grid = torch.arange(25).reshape(1, 25) % 6
    for tid in range(8):
        symmetry = perturbed.maze_symmetry(5, 6, tid)
        moved = symmetry.apply(grid)
        assert np.array_equal(moved.numpy().reshape(5, 5), dihedral_transform(grid.numpy().reshape(5, 5), tid))
        assert torch.equal(symmetry.invert(moved), grid)


def test_one_rollout_is_the_plain_evaluation_and_more_never_lose_the_oracle():
    torch.manual_seed(0)
    model = HRMACTv1(tiny_hrm_config(seq_len=16, vocab_size=6, halt_max_steps=3)).eval()
    rng = np.random.default_rng(0)
    pairs = [generate_puzzle(4, rng) for _ in range(10)]
    inputs = torch.as_tensor(np.stack([encode_board(p) for p, _, _ in pairs]).astype(np.int32))
    labels = torch.as_tensor(np.stack([encode_board(s) for _, s, _ in pairs]).astype(np.int32))
    first = dynamics.rollout(
        model, [{"inputs": inputs, "labels": labels, "puzzle_identifiers": torch.zeros(10, dtype=torch.int32)}], 3
    )
    labels[:5] = first.logits[-1].argmax(-1)[:5]  # five puzzles the plain model gets right
    batch = {"inputs": inputs, "labels": labels, "puzzle_identifiers": torch.zeros(10, dtype=torch.int32)}
    plain = dynamics.rollout(model, [batch], 3)
    answers = perturbed.perturbed_answers(model, [batch], rollouts=4, task="sudoku", noise=0.1)
    assert torch.equal(answers.answers[0], plain.logits[-1].argmax(-1))
    curve = answers.curve([1, 2, 4])
    assert curve[0]["vote"] == curve[0]["q"] == curve[0]["oracle"] == 0.5
    assert [row["oracle"] for row in curve] == sorted(row["oracle"] for row in curve)
    assert curve[-1]["act_steps_per_puzzle"] == 12
    gain = answers.gain("vote", 4)
    assert gain["gain"] == pytest.approx(curve[-1]["vote"] - curve[0]["vote"])
    assert gain["interval_95"][0] <= gain["gain"] <= gain["interval_95"][1]


def test_vote_and_q_choices_by_hand():
    answers = torch.tensor([[[1, 1]], [[2, 2]], [[2, 2]]])  # (K 3, N 1, cells 2)
    chosen = perturbed.PerturbedAnswers(
        answers=answers,
        exact=torch.tensor([[True], [False], [False]]),
        confidence=torch.tensor([[0.9], [0.2], [0.3]]),
        labels=torch.tensor([[1, 1]]),
        steps=2,
    )
    assert chosen.choose("vote").tolist() == [1] and chosen.choose("q").tolist() == [0]
    assert chosen.choose("vote", k=2).tolist() == [0]  # a tie goes to the earliest rollout


def test_rollout_arguments_fail_with_one_line():
    with pytest.raises(perturbed.RolloutError, match="at least 1"):
        perturbed.check_rollout_args(0, "vote", 0.0, True)
    with pytest.raises(perturbed.RolloutError, match="allowed: vote, q"):
        perturbed.check_rollout_args(2, "best", 0.0, True)
    with pytest.raises(perturbed.RolloutError, match="would all be the same"):
        perturbed.check_rollout_args(2, "vote", 0.0, False)
    with pytest.raises(perturbed.RolloutError, match="Sudoku or Maze"):
        perturbed.draw_symmetries("grid", 16, 6, 2)


# ------------------------------------------------------------------------------ commands on a trained run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return train_tiny_sudoku(tmp_path_factory.mktemp("failure")) / "run"


def test_analyses_write_json_pictures_and_report_sections(tiny_run, tmp_path):
    out = tmp_path / "analysis"
    for args in (
        ["halting", "--puzzles", "12"],
        ["fixed-points", "--puzzles", "12", "--starts", "3"],
        ["lyapunov", "--puzzles", "12"],
        ["rollouts", "--puzzles", "12", "--rollouts", "4"],
    ):
        result = runner.invoke(app, ["analyze", args[0], str(tiny_run), *args[1:], "--out", str(out)])
        assert result.exit_code == 0, result.output
    for name in ("halting", "fixed_points", "lyapunov", "rollouts"):
        assert_real_picture(out / f"{name}.png")
    report = (out / "report.html").read_text()
    for section in (
        "Q-halting vs fixed Mmax",
        "settling classes",
        "Guessing",
        "One blank",
        "Lyapunov",
        "accuracy vs K",
    ):
        assert section in report
    halting_result = json.loads((out / "halting.json").read_text())
    plain = run_evaluation(tiny_run, out=tmp_path / "plain.json")
    assert halting_result["fixed"]["exact"] == pytest.approx(plain["metrics"]["exact_accuracy"])
    fixed = json.loads((out / "fixed_points.json").read_text())
    assert sum(row["count"] for row in fixed["settling"]["classes"]) == 12
    assert fixed["one_blank"]["puzzles"] == 12
    rollouts = json.loads((out / "rollouts.json").read_text())
    assert rollouts["curve"][0]["vote"] == pytest.approx(plain["metrics"]["exact_accuracy"])  # K = 1 is plain


def test_evaluate_with_one_rollout_per_puzzle_is_the_plain_evaluation(tiny_run, tmp_path):
    plain = run_evaluation(tiny_run, out=tmp_path / "plain.json")["metrics"]["exact_accuracy"]
    result = runner.invoke(
        app, ["evaluate", str(tiny_run), "--rollouts", "4", "--noise", "0.2", "--out", str(tmp_path / "r.json")]
    )
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["plain_exact_accuracy"] == pytest.approx(plain)
    assert [row["rollouts"] for row in data["curve"]] == [1, 2, 4]
    assert data["exact_accuracy"] == data["curve"][-1]["vote"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["evaluate", "{run}", "--rollouts", "0"], "--rollouts must be at least 1"),
        (["evaluate", "{run}", "--rollouts", "2", "--no-symmetries"], "would all be the same"),
        (["evaluate", "{run}", "--rollouts", "2", "--banks", "all"], "cannot be combined with --banks"),
        (["analyze", "lyapunov", "{run}", "--burn-in", "99"], "--burn-in must be in 0..7"),
        (["analyze", "fixed-points", "{run}", "--factor", "1"], "too few to look for periods"),
        (["analyze", "fixed-points", "{run}", "--std", "0"], "--std must be > 0"),
        (["analyze", "rollouts", "{run}", "--select", "x"], "No such option"),
        (["analyze", "halting", "{run}", "--factor", "0"], "--factor must be >= 1"),
    ],
)
def test_careless_input_is_one_line(tiny_run, tmp_path, args, expected):
    before = sorted(tiny_run.rglob("*"))
    result = runner.invoke(
        app, [a.format(run=tiny_run) for a in args] + (["--out", str(tmp_path / "o")] if args[0] == "analyze" else [])
    )
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert sorted(tiny_run.rglob("*")) == before


def test_maze_rollouts_run_through_the_dihedral_maps(tmp_path):
    from reasonlens.cli.evaluate import run_rollout_evaluation
    from reasonlens.hrm import save_checkpoint
    from reasonlens.hrm.data.maze import build_maze_dataset

    data = build_maze_dataset({"out_dir": tmp_path / "maze", "size": 6, "train_size": 4, "test_size": 6, "workers": 1})
    torch.manual_seed(0)
    save_checkpoint(HRMACTv1(tiny_hrm_config(seq_len=36, vocab_size=6, halt_max_steps=2)), tmp_path / "run")
    plain = run_evaluation(tmp_path / "run", data=data, out=tmp_path / "plain.json")["metrics"]["exact_accuracy"]
    result = run_rollout_evaluation(tmp_path / "run", data, rollouts=8, out=tmp_path / "r.json", device="cpu")
    assert result["puzzles"] == 6 and [row["rollouts"] for row in result["curve"]] == [1, 2, 4, 8]
    assert result["plain_exact_accuracy"] == pytest.approx(plain)
