"""HRM activation patching: the call-index map and the z_H / z_L aliases, engine invariants on the real
model, and seed 000's commands end to end on a tiny trained checkpoint (ours and official)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import assert_real_picture, tiny_hrm_config, train_tiny_sudoku

from reasonlens.hrm import IGNORE_LABEL_ID, TRM, HRMACTv1, export_official_checkpoint, load_checkpoint
from reasonlens.hrm.analysis.adapter import HRMAdapter, call_index, hrm_aliases
from reasonlens.hrm.analysis.patching import (
    ActivationPatcher,
    build_experiments,
    level_interventions,
    run_patch_sweep,
    sweep,
)
from reasonlens.hrm.data.sudoku import SudokuBuildConfig, build_sudoku_dataset
from reasonlens.hrm.evaluation.rollout import halting_at
from reasonlens.interp import InterpError, capture, intervene
from reasonlens.interp.attribution import agreement
from reasonlens.interp.hooks import SitePatch
from reasonlens.interp.rows import single_row_patch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return train_tiny_sudoku(tmp_path_factory.mktemp("patching"))


def test_call_index_map_and_aliases_follow_the_schedule():
    config = tiny_hrm_config(seq_len=4, vocab_size=5, hidden_size=16, L_cycles=3, halt_max_steps=2, puzzle_emb_ndim=0)
    model = HRMACTv1(config).eval()
    order = []
    for name in ("inner.L_level", "inner.H_level"):
        model.get_submodule(name).register_forward_hook(lambda m, i, o, name=name: order.append(name))
    batch = {"inputs": torch.randint(0, 5, (2, 4)), "puzzle_identifiers": torch.zeros(2, dtype=torch.int32)}
    carry = model.initial_carry(batch)
    with torch.no_grad():
        for _ in range(2):
            carry, _ = model(carry, batch)
    l_calls = [i for i, n in enumerate(order) if n == "inner.L_level"]
    h_calls = [i for i, n in enumerate(order) if n == "inner.H_level"]
    for step in range(2):
        for h in range(2):
            # the H update of cycle h follows its T=3 L updates
            assert (
                h_calls[call_index(model, "inner.H_level", step, h)]
                > l_calls[call_index(model, "inner.L_level", step, h, 2)]
            )
    aliases = hrm_aliases(model)
    assert aliases["z_H"].module_call(1) == 3 == call_index(model, "inner.H_level", 1, 1)
    assert aliases["z_L"].module_call(0) == 5 == call_index(model, "inner.L_level", 0, 1, 2)
    trm = TRM(dict(seq_len=4, vocab_size=5, hidden_size=16, num_heads=2, H_cycles=3, L_cycles=2, puzzle_emb_len=1))
    assert hrm_aliases(trm)["z_H"].module_call(0) == 8 and hrm_aliases(trm)["z_L"].module_call(0) == 7


def test_aliases_are_the_carry_each_step_produces(tiny_run):
    adapter = HRMAdapter.from_checkpoint(tiny_run / "run", device="cpu")
    batch = adapter.batch([0, 1])
    with torch.inference_mode(), capture(adapter.model, ["z_H", "z_L"], adapter.aliases) as cache:
        carry = adapter.model.initial_carry(batch)
        for step in range(adapter.max_steps):
            carry, _ = adapter.model(carry, batch)
            assert torch.equal(cache[("z_H", step)], carry.inner_carry.z_H)
            assert torch.equal(cache[("z_L", step)], carry.inner_carry.z_L)


def test_identity_and_full_patches_on_the_hrm(tiny_run):
    adapter = HRMAdapter.from_checkpoint(tiny_run / "run", device="cpu")
    both_all = level_interventions("both", None, None, adapter.prefix_len)
    results = sweep(adapter, [e for e in build_experiments(adapter, 3, ["both"], ["all"]) if e.source != e.target])
    with torch.inference_mode():
        source_logits = adapter.run(adapter.batch([r.source for r in results]))
    for row, result in enumerate(results):  # z_H of the last step decides the answer: a full patch copies it
        assert (
            result.patched["correct"]
            == (source_logits[row].argmax(-1) == adapter.batch([result.target])["labels"][0]).tolist()
        )
    from reasonlens.interp import Experiment

    identity = sweep(adapter, [Experiment(t, t, both_all) for t in range(4)])
    assert all(r.patched == r.baseline for r in identity)


def test_batched_equals_looped_on_the_hrm(tiny_run):
    adapter = HRMAdapter.from_checkpoint(tiny_run / "run", device="cpu")
    experiments = build_experiments(adapter, 4, ["H", "L", "both"], ["all", "0", "1,2"])
    from reasonlens.interp import Experiment

    experiments += [Experiment(2, 3, level_interventions("H", (1,), (0, 5, 6), adapter.prefix_len))]
    batched = sweep(adapter, experiments, batched=True, chunk_size=7)
    looped = sweep(adapter, experiments, batched=False)
    for b, loop in zip(batched, looped):
        assert b.patched["correct"] == loop.patched["correct"]
        assert b.patched["accuracy"] == pytest.approx(loop.patched["accuracy"])


def test_positions_are_puzzle_cells(tiny_run):
    adapter = HRMAdapter.from_checkpoint(tiny_run / "run", device="cpu")
    (intervention,) = level_interventions("H", (0,), (0, 3), adapter.prefix_len)
    assert intervention.positions == (adapter.prefix_len, adapter.prefix_len + 3)
    source = adapter.batch([1])
    with torch.inference_mode(), capture(adapter.model, ["z_H"], adapter.aliases) as cache:
        adapter.run(source)
    rows = {key: cache[key][0] for key in cache}
    target = adapter.batch([0])
    with (
        torch.inference_mode(),
        intervene(adapter.model, [SitePatch("z_H", (0,), single_row_patch(intervention, rows))], adapter.aliases),
        capture(adapter.model, ["z_H"], adapter.aliases) as patched,
    ):
        adapter.run(target)
    state, src = patched[("z_H", 0)][0], rows[("z_H", 0)]
    assert torch.equal(
        state[[adapter.prefix_len, adapter.prefix_len + 3]], src[[adapter.prefix_len, adapter.prefix_len + 3]]
    )
    assert not torch.equal(state[adapter.prefix_len + 1], src[adapter.prefix_len + 1])


def run_script(name, *args):
    return subprocess.run([sys.executable, str(REPO / "scripts" / name), *args], capture_output=True, text=True)


def test_activation_patcher_identity_and_full_patch(tiny_run):
    """Seed 000's ActivationPatcher: a puzzle patched with its own cache is unchanged; patching z_H at every
    ACT step and cell makes the target answer exactly as the source does."""
    patcher = ActivationPatcher.from_checkpoint(tiny_run / "run", device="cpu")
    assert isinstance(patcher.adapter, HRMAdapter) and patcher.levels == ("z_H", "z_L")
    own_scores, own_cache = patcher.cache_activations(3)
    again, _ = patcher.patched_run(3, own_cache, level="both")
    assert torch.equal(again["correct"], own_scores["correct"])
    source_scores, source_cache = patcher.cache_activations(0)
    _, patched_cache = patcher.patched_run(5, source_cache, level="H")
    for step in range(patcher.adapter.max_steps):  # the patched run carries the source's z_H at every step
        assert torch.equal(patched_cache[("z_H", step)], source_cache[("z_H", step)])
    batch = patcher.adapter.batch([0, 5])
    with torch.inference_mode():
        source_prediction = patcher.adapter.run(batch)[0].argmax(-1)
    patched_scores, _ = patcher.patched_run(5, source_cache, level="H")
    target_labels = batch["labels"][1]
    assert torch.equal(patched_scores["correct"][0], (source_prediction == target_labels) & (target_labels >= 0))
    with pytest.raises(InterpError, match="patch level must be one of H, L, both"):
        patcher.patched_run(5, source_cache, level="X")


def test_seed_single_patch_command(tiny_run, tmp_path):
    out = tmp_path / "results"
    proc = run_script(
        "activation_patching.py",
        "--checkpoint",
        str(tiny_run / "run"),
        "--source_puzzle_idx",
        "0",
        "--target_puzzle_idx",
        "1",
        "--patch_level",
        "both",
        "--patch_steps",
        "0,1,2",
        "--max_steps",
        "8",
        "--output_dir",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    assert "target baseline accuracy" in proc.stdout and "accuracy change" in proc.stdout
    record = yaml.safe_load((out / "patching_src0_tgt1_both_steps-0-1-2.yaml").read_text())
    metrics = record["metrics"]
    assert set(metrics) >= {
        "source_accuracy",
        "target_baseline_accuracy",
        "target_patched_accuracy",
        "accuracy_change",
        "source_exact",
        "target_patched_exact",
        "cells_fixed_by_patch",
        "cells_broken_by_patch",
    }
    # the baseline by hand (a plain rollout, no engine), and the change from the cells that flipped
    model = load_checkpoint(tiny_run / "run").eval()
    target = HRMAdapter(model, tiny_run / "data", max_steps=8).batch([1])
    with torch.no_grad(), halting_at(model, 8):
        carry = model.initial_carry(target)
        for _ in range(8):
            carry, outputs = model(carry, target)
    labels = target["labels"][0]
    scored = labels != IGNORE_LABEL_ID
    by_hand = float(((outputs["logits"][0].argmax(-1) == labels) & scored).sum() / scored.sum())
    assert metrics["target_baseline_accuracy"] == pytest.approx(by_hand)
    flipped = len(metrics["cells_fixed_by_patch"]) - len(metrics["cells_broken_by_patch"])
    assert metrics["accuracy_change"] == pytest.approx(flipped / int(scored.sum()))
    assert metrics["target_patched_accuracy"] == pytest.approx(by_hand + flipped / int(scored.sum()))
    assert record["config"]["max_steps"] == 8
    activations = torch.load(out / "activations_src0_tgt1_both_steps-0-1-2.pt", weights_only=True)["activations"]
    assert activations["source"]["z_H"].shape == (8, 17, 32)  # 8 steps, 1 prefix + 16 cells, hidden 32
    assert torch.equal(activations["target_patched"]["z_H"][:3], activations["source"]["z_H"][:3])
    assert not torch.equal(activations["target_patched"]["z_H"][3], activations["source"]["z_H"][3])
    # position-specific patching (seed: first row of the board)
    proc = run_script(
        "activation_patching.py",
        "--checkpoint",
        str(tiny_run / "run"),
        "--source_puzzle_idx",
        "0",
        "--target_puzzle_idx",
        "1",
        "--patch_level",
        "both",
        "--patch_positions",
        "0,1,2,3",
        "--output_dir",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    assert_real_picture(out / "board_src0_tgt1_both_steps-all_pos-0-1-2-3.png")


def test_seed_batch_command(tiny_run, tmp_path):
    out = tmp_path / "batch"
    proc = run_script(
        "batch_activation_patching.py",
        "--checkpoint",
        str(tiny_run / "run"),
        "--num_puzzles",
        "10",
        "--patch_levels",
        "H,L,both",
        "--patch_steps_configs",
        "all,0,1,2",
        "--mode",
        "pairwise",
        "--output_dir",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    assert len(list((out / "experiments").glob("*.yaml"))) == 10 * 9 * 3 * 4
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_experiments"] == 1080 and len(summary["aggregates"]) == 12
    assert {"level", "steps", "mean_change", "std_change"} <= set(summary["aggregates"][0])
    assert summary["most_disruptive"][0]["mean_change"] == min(a["mean_change"] for a in summary["aggregates"])
    assert "most disruptive" in proc.stdout
    html = (out / "report.html").read_text()
    assert "data:image/png;base64" in html and "puzzle 9" in html
    proc = run_script(
        "batch_activation_patching.py",
        "--checkpoint",
        str(tiny_run / "run"),
        "--num_puzzles",
        "5",
        "--patch_levels",
        "H",
        "--patch_steps_configs",
        "all",
        "--mode",
        "one_to_many",
        "--output_dir",
        str(tmp_path / "otm"),
    )
    assert proc.returncode == 0 and json.loads((tmp_path / "otm" / "summary.json").read_text())["num_experiments"] == 4


def test_batch_sweep_by_attribution_screens_like_exact_patching(tiny_run, tmp_path):
    adapter = HRMAdapter.from_checkpoint(tiny_run / "run", device="cpu")
    levels, steps = ["H", "L", "both"], ["all", "0", "1"]
    estimated = run_patch_sweep(
        adapter, 5, levels, steps, output_dir=tmp_path / "a", method="attribution", log=lambda *_: None
    )
    run_patch_sweep(adapter, 5, levels, steps, output_dir=tmp_path / "e", log=lambda *_: None)
    assert estimated["method"] == "attribution" and estimated["metric"] == "label_log_prob"
    assert (tmp_path / "a" / "label_log_prob_change.png").exists() and (tmp_path / "e" / "accuracy_change.png").exists()
    experiments = build_experiments(adapter, 5, levels, steps)
    exact_rows = sweep(adapter, experiments)
    estimated_rows = sweep(adapter, experiments, method="attribution")
    exact_changes = [r.change("label_log_prob") for r in exact_rows]
    estimated_changes = [r.change("label_log_prob") for r in estimated_rows]
    assert agreement(exact_changes, estimated_changes)["spearman"] > 0.3  # a screen, not a coin toss
    assert exact_changes != pytest.approx(estimated_changes)  # an estimate, not the exact value
    with pytest.raises(InterpError, match="--method must be one of exact, attribution"):
        run_patch_sweep(adapter, 3, ["H"], ["all"], output_dir=tmp_path / "x", method="gradient")
    assert not (tmp_path / "x").exists()


def test_official_checkpoints_and_shape_mismatch(tiny_run, tmp_path):
    export_official_checkpoint(load_checkpoint(tiny_run / "run"), tmp_path / "official")
    proc = run_script(
        "activation_patching.py",
        "--checkpoint",
        str(tmp_path / "official"),
        "--data",
        str(tiny_run / "data"),
        "--source_puzzle_idx",
        "2",
        "--target_puzzle_idx",
        "3",
        "--patch_level",
        "H",
        "--output_dir",
        str(tmp_path / "res"),
    )
    assert proc.returncode == 0, proc.stderr
    six = build_sudoku_dataset(
        SudokuBuildConfig(out_dir=tmp_path / "six", source="generate", size=6, train_size=4, test_size=2, seed=0)
    )
    proc = run_script(
        "activation_patching.py",
        "--checkpoint",
        str(tiny_run / "run"),
        "--source_data",
        str(six),
        "--source_puzzle_idx",
        "0",
        "--target_puzzle_idx",
        "1",
        "--output_dir",
        str(tmp_path / "res"),
    )
    assert proc.returncode == 2 and "same shape" in proc.stderr
    with pytest.raises(InterpError, match="beyond the run's 4 steps"):
        build_experiments(HRMAdapter.from_checkpoint(tiny_run / "run", device="cpu"), 3, ["H"], ["5"])
