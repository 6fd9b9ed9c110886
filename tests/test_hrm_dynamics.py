"""Reasoning dynamics (issue [F]): participation ratios, forward residuals, trajectories that agree with
the model's own carries, the scaling curve against separate shorter rollouts, and `reasonlens analyze`
end to end on a tiny trained checkpoint."""

import json

import numpy as np
import pytest
import torch
from conftest import assert_real_picture, tiny_hrm_config, train_tiny_sudoku, write_tiny_recipe
from PIL import Image
from typer.testing import CliRunner

from reasonlens.cli.main import app
from reasonlens.hrm.analysis import dynamics
from reasonlens.hrm.analysis.adapter import HRMAdapter, call_index
from reasonlens.hrm.data.sudoku import SudokuBuildConfig, build_sudoku_dataset
from reasonlens.hrm.evaluation.rollout import halting_at
from reasonlens.interp import InterpError
from reasonlens.utils.memory import count_saved_bytes


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return train_tiny_sudoku(tmp_path_factory.mktemp("dynamics"), L_cycles=3, halt_max_steps=3) / "run"


def test_participation_ratio_of_known_spectra():
    generator = torch.Generator().manual_seed(0)
    k, d = 5, 32
    basis = torch.linalg.qr(torch.randn(d, d, generator=generator))[0][:, :k]
    isotropic = torch.randn(40_000, k, generator=generator) @ basis.T  # k equal variances inside 32 dims
    assert dynamics.participation_ratio(isotropic) == pytest.approx(k, rel=0.02)
    s1, s2 = 3.0, 1.0  # rows ±s1·e1, ±s2·e2: covariance eigenvalues ∝ s1², s2²
    exact = torch.tensor([[s1, 0.0], [-s1, 0.0], [0.0, s2], [0.0, -s2]])
    assert dynamics.participation_ratio(exact) == pytest.approx((s1**2 + s2**2) ** 2 / (s1**4 + s2**4))
    with pytest.raises(InterpError, match="samples ≥ 2"):
        dynamics.participation_ratio(torch.ones(1, 4))


def test_forward_residuals_by_hand():
    states = torch.zeros(3, 1, 2, 2)  # (calls, N, positions, hidden)
    states[0] = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    states[1] = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    states[2] = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    residuals = dynamics.forward_residuals(states)
    np.testing.assert_allclose(residuals["absolute"], [(5 + 1) / 2, 0.0])
    np.testing.assert_allclose(residuals["relative"], [(5 / 5 + 1 / 1) / 2, 0.0])


def test_trajectories_match_the_carry_and_the_call_map(tiny_run):
    adapter = HRMAdapter.from_checkpoint(tiny_run, device="cpu")
    model, config = adapter.model, adapter.model.config
    trajectories = dynamics.collect_trajectories(adapter, [0, 1, 2], chunk_size=2)
    steps = config.halt_max_steps
    assert trajectories.states["inner.L_level"].shape[0] == steps * config.H_cycles * config.L_cycles
    assert trajectories.states["inner.H_level"].shape[0] == steps * config.H_cycles
    schedule = dynamics.call_schedule(model, "inner.L_level", steps * config.H_cycles * config.L_cycles)
    for i, place in enumerate(schedule):
        assert call_index(model, "inner.L_level", place["step"], place["cycle"], place["inner"]) == i
    batch = adapter.batch([0, 1, 2])
    z_h = dynamics.step_states(trajectories, model, "H")  # (N, steps, cells, hidden)
    z_l = dynamics.step_states(trajectories, model, "L")
    with torch.no_grad(), halting_at(model, steps):
        carry = model.initial_carry(batch)
        for s in range(steps):
            carry, outputs = model(carry, batch)
            prefix = adapter.prefix_len
            torch.testing.assert_close(z_h[:, s], carry.inner_carry.z_H[:, prefix:].float())
            torch.testing.assert_close(z_l[:, s], carry.inner_carry.z_L[:, prefix:].float())
            torch.testing.assert_close(trajectories.logits[s], outputs["logits"].float())


def test_scaling_rows_equal_separate_rollouts(tiny_run):
    adapter = HRMAdapter.from_checkpoint(tiny_run, device="cpu")
    indices = list(range(12))
    long = dynamics.collect_trajectories(adapter, indices, steps=6)
    rows = dynamics.per_step_accuracy(long)
    for m in (1, 2, 5):
        short = HRMAdapter.from_checkpoint(tiny_run, max_steps=m, device="cpu")
        batch = short.batch(indices)
        with torch.no_grad():
            scores = short.score(short.run(batch), batch)
        assert rows[m - 1]["exact"] == pytest.approx(float(scores["exact"].mean()))
        assert rows[m - 1]["token"] == pytest.approx(float(scores["accuracy"].mean()), abs=1e-6)
    segments = [r["act_steps"] for r in rows]
    halting_steps = [r["mean_steps_with_halting"] for r in rows]
    assert segments == sorted(segments) and all(h <= s for h, s in zip(halting_steps, segments))
    assert halting_steps == sorted(halting_steps)  # more segments allowed never halts earlier


def test_analyze_commands_write_json_pictures_and_report(tiny_run, tmp_path):
    runner = CliRunner()
    out = tmp_path / "analysis"
    for command in (
        ["convergence", str(tiny_run), "--puzzles", "6", "--out", str(out)],
        ["dimensionality", str(tiny_run), "--puzzles", "12", "--bootstrap", "10", "--out", str(out)],
        ["steps", str(tiny_run), "--puzzles", "2", "--out", str(out)],
        ["scaling", str(tiny_run), "--puzzles", "12", "--factor", "2", "--out", str(out)],
    ):
        result = runner.invoke(app, ["analyze", *command])
        assert result.exit_code == 0, result.output
    dimensionality = json.loads((out / "dimensionality.json").read_text())
    for name in ("trained", "untrained"):
        assert dimensionality[name]["PR_H"] > 1 and dimensionality[name]["PR_L"] > 1
        low, high = dimensionality[name]["ratio_95"]
        assert low <= high
    adapter = HRMAdapter.from_checkpoint(tiny_run, device="cpu")  # the numbers are the library's, recomputed
    twin = HRMAdapter(dynamics.untrained_twin(adapter.model), adapter.dataset_dir, device="cpu")
    for name, which in (("trained", adapter), ("untrained", twin)):
        expected = dynamics.dimensionality(dynamics.collect_trajectories(which, list(range(12))), which.model, 10)
        assert dimensionality[name]["PR_H"] == pytest.approx(expected["PR_H"], rel=1e-6)
        assert dimensionality[name]["PR_L"] == pytest.approx(expected["PR_L"], rel=1e-6)
    scaling = json.loads((out / "scaling.json").read_text())
    assert [r["act_steps"] for r in scaling["rows"]] == [1, 2, 3, 4, 6]
    for name in ("convergence.png", "dimensionality.png", "scaling.png", "steps/puzzle_0.png"):
        assert_real_picture(out / name)
    with Image.open(out / "steps" / "puzzle_1.gif") as gif:
        assert gif.n_frames == 3
    report = (out / "report.html").read_text()
    for heading in ("Convergence", "Dimensionality", "Reasoning steps: puzzle 1", "Inference-time scaling"):
        assert heading in report


def test_trajectories_without_states_keep_the_same_outputs(tiny_run):
    adapter = HRMAdapter.from_checkpoint(tiny_run, device="cpu")
    full = dynamics.collect_trajectories(adapter, list(range(6)), 5, chunk_size=4)
    light = dynamics.collect_trajectories(adapter, list(range(6)), 5, chunk_size=4, keep_states=False)
    assert light.states == {} and full.states
    for field in ("logits", "q_halt", "q_continue", "labels", "inputs"):
        assert torch.equal(getattr(light, field), getattr(full, field)), field
    assert dynamics.per_step_accuracy(light) == dynamics.per_step_accuracy(full)


class _ParityAdapter:
    """Solves exactly the even puzzles: ``run`` returns logits whose argmax is the label on even rows."""

    def batch(self, indices):
        return {"index": torch.tensor(indices), "labels": torch.ones(len(indices), 3, dtype=torch.long)}

    def run(self, batch):
        logits = torch.zeros(len(batch["index"]), 3, 4)
        logits[..., 1] = (batch["index"] % 2 == 0).float()[:, None]  # argmax 1 = label on even rows, else 0
        return logits

    def score(self, logits, batch):
        return {"exact": (logits.argmax(-1) == batch["labels"]).all(-1).float()}


def test_solved_indices_keeps_solved_puzzles_in_order_and_stops_early():
    adapter = _ParityAdapter()
    assert dynamics.solved_indices(adapter, range(10), 100, chunk_size=3) == [0, 2, 4, 6, 8]
    assert dynamics.solved_indices(adapter, [7, 4, 1, 2], 1, chunk_size=2) == [4]
    assert dynamics.solved_indices(adapter, [1, 3], 5) == []


def test_analyze_dimensionality_solved_needs_two_solved_puzzles(tiny_run, tmp_path):
    adapter = HRMAdapter.from_checkpoint(tiny_run, device="cpu")
    solved = dynamics.solved_indices(adapter, range(adapter.num_examples), adapter.num_examples)
    command = ["analyze", "dimensionality", str(tiny_run), "--puzzles", "4", "--bootstrap", "2", "--solved"]
    result = CliRunner().invoke(app, [*command, "--out", str(tmp_path)])
    if len(solved) >= 2:
        assert result.exit_code == 0, result.output
        trajectories = json.loads((tmp_path / "dimensionality.json").read_text())["trained"]["trajectories"]
        assert trajectories == min(4, len(solved))
    else:  # the 8-step tiny run solves none of its test puzzles
        assert result.exit_code == 2 and f"--solved: the model solves {len(solved)} of the" in result.output


def test_analyze_bad_input(tmp_path, tiny_run):
    runner = CliRunner()
    result = runner.invoke(app, ["analyze", "convergence", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "does not exist" in result.output
    result = runner.invoke(app, ["analyze", "dimensionality", str(tiny_run), "--puzzles", "1", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--puzzles must be at least 2" in result.output


def _saved_bytes_and_grads(gradient_steps: int, cycles: int):
    from reasonlens.hrm import ACTLossHead
    from reasonlens.hrm.models.study_variants import HRMACTv1Study

    config = tiny_hrm_config(
        seq_len=4, vocab_size=5, hidden_size=16, H_cycles=cycles, L_cycles=cycles, puzzle_emb_ndim=0, halt_max_steps=2
    )
    config.update(gradient_steps=gradient_steps, batch_size=3)
    torch.manual_seed(0)
    model = HRMACTv1Study(config).train()
    head = ACTLossHead(model)
    generator = torch.Generator().manual_seed(1)
    batch = {
        "inputs": torch.randint(1, 5, (3, 4), generator=generator),
        "labels": torch.randint(1, 5, (3, 4), generator=generator),
        "puzzle_identifiers": torch.zeros(3, dtype=torch.int32),
    }
    with count_saved_bytes() as saved:
        _, loss, metrics, *_ = head(head.initial_carry(batch), batch)
    loss.backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return saved.total, grads, metrics


def test_one_step_gradient_memory_is_flat_and_bptt_grows():
    one_step = [_saved_bytes_and_grads(1, c)[0] for c in (2, 3, 4)]
    bptt = [_saved_bytes_and_grads(c * c, c)[0] for c in (2, 3, 4)]
    assert one_step[0] == one_step[1] == one_step[2]  # O(1) in the number of cycles
    assert bptt[0] < bptt[1] < bptt[2] and bptt[0] > one_step[0]
    _, grads_one, metrics_one = _saved_bytes_and_grads(1, 2)
    _, grads_all, metrics_all = _saved_bytes_and_grads(4, 2)
    assert metrics_one["lm_loss"] == metrics_all["lm_loss"]  # same forward values
    assert not torch.allclose(grads_one, grads_all)  # but a different gradient
    with pytest.raises(ValueError, match="gradient_steps .5. can be at most"):
        _saved_bytes_and_grads(5, 2)


def test_study_trains_variants_and_tabulates(tmp_path):
    from reasonlens.utils.io import write_yaml

    data = build_sudoku_dataset(
        SudokuBuildConfig(out_dir=tmp_path / "data", source="generate", size=4, train_size=48, test_size=8, seed=1)
    )
    write_tiny_recipe(tmp_path / "base.yaml", data, hidden_size=16, H_cycles=2, L_cycles=2, puzzle_emb_ndim=16)
    write_yaml(
        tmp_path / "study.yaml",
        {
            "name": "gradient",
            "base": str(tmp_path / "base.yaml"),
            "overrides": ["epochs=1"],
            "puzzles": 8,
            "variants": {"one_step": ["model.gradient_steps=1"], "full_bptt": ["model.gradient_steps=4"]},
        },
    )
    result = CliRunner().invoke(app, ["study", str(tmp_path / "study.yaml"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    study = json.loads((tmp_path / "out" / "study.json").read_text())
    one, full = study["variants"]["one_step"], study["variants"]["full_bptt"]
    assert full["saved_mib"] > one["saved_mib"] and one["parameters"] == full["parameters"]
    assert {"exact", "PR_H", "PR_L", "h_decay", "l_reset"} <= set(one)
    assert "| one_step |" in (tmp_path / "out" / "study.md").read_text()
    result = CliRunner().invoke(app, ["study", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_convergence_summary_by_hand():
    from reasonlens.hrm.analysis.studies import convergence_summary

    result = {
        "modules": {
            # L_cycles = 2: residuals of L calls 1..5; calls 2 and 4 are the first after an H update
            "inner.L_level": {"relative": [0.5, 0.8, 0.2, 0.4, 0.1]},
            "inner.H_level": {"relative": [0.6, 0.3]},
        }
    }
    summary = convergence_summary(result, l_cycles=2)
    assert summary["h_decay"] == pytest.approx(0.5)
    assert summary["l_reset"] == pytest.approx((0.8 / 0.5 + 0.4 / 0.2) / 2)
