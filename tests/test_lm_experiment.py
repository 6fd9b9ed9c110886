"""``reasonlens lm experiment`` (issue [K]): the whole SFT-vs-RL study on a tiny config writes every artifact,
a resumed study skips the stages that finished and redoes an interrupted one, intervals and findings follow
their definitions, and bad input stops with one line before any folder is made."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("trl")
pytest.importorskip("transformer_lens")

from typer.testing import CliRunner

from reasonlens.cli.main import app
from reasonlens.lm.experiment.results import _interval, curve_summary
from reasonlens.lm.experiment.runner import Plan, control_steps, run_experiment
from reasonlens.utils.io import write_yaml
from reasonlens.utils.stats import t_interval

TINY = {
    "task": {
        "answer_format": "worked",
        "max_length": 192,
        "n_train": 200,
        "n_val": 16,
        "n_test": 16,
        "n_ood": 16,
        "ood_categories": ["paraphrase", "unseen_colour"],
    },
    "sft": {
        "model": {"size": "tiny", "n_positions": 192},
        "max_steps": 20,
        "eval_steps": 10,
        "batch_size": 16,
    },
    "rl": {"max_steps": 1, "batch_size": 4, "num_generations": 2, "n_prompts": 16, "eval_every": 1000},
    "analysis": {
        "max_examples": 16,
        "sae_steps": 20,
        "positions": ["final"],
        "probe_targets": ["label"],
        "ablation_ops": ["zero"],
        "top_k": 2,
    },
    "experiment": {
        "seeds": [0, 1],
        "starts": {"early": 10, "late": "best"},
        "arms": [
            {"name": "grpo_early", "method": "grpo", "start": "early"},
            {"name": "grpo_mix_late", "method": "grpo", "start": "late", "mix": {"id": 0.5, "paraphrase": 0.5}},
            {"name": "sft_more_late", "method": "sft", "start": "late"},
        ],
        "small_data": {"n_train": 50, "max_steps": 10, "keep_steps": [5]},
        "eval_examples": 16,
        "curve_examples": 8,
        "circuit_arms": ["grpo_mix_late"],
    },
}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("experiment") / "study"
    log: list[str] = []
    results = run_experiment(Plan.from_sections(TINY), out, log=log.append)
    return out, results, log


def test_the_experiment_writes_every_artifact(study):
    out, results, log = study
    assert (out / "report.html").stat().st_size > 10_000  # figures embedded
    assert json.loads((out / "results.json").read_text())["arms"].keys() == {
        "grpo_early",
        "grpo_mix_late",
        "sft_more_late",
    }
    for regime, steps in (("sft", [10, 20]), ("sft_small", [5, 10])):
        curve = results["sft_curves"][regime]
        assert curve["splits"].keys() == {"train", "test", "ood_paraphrase", "ood_unseen_colour"}
        assert all(split["steps"] == steps for split in curve["splits"].values())
    for arm in ("grpo_early", "grpo_mix_late"):
        for seed in (0, 1):
            assert (out / "arms" / arm / f"seed_{seed}" / "final" / "model.safetensors").is_file()
    assert (out / "arms" / "sft_more_late" / "seed_1" / "best" / "model.safetensors").is_file()
    arm = results["arms"]["grpo_early"]
    assert arm["seeds"] == 2 and len(arm["splits"]["test"]["per_seed"]) == 2
    assert arm["splits"]["test"]["steps_accuracy"] is not None  # the worked format reports its steps
    assert results["starts"].keys() == {"early", "late"}
    assert {(f["arm"], f["against"]) for f in results["findings"]} == {
        ("grpo_early", "start early"),
        ("grpo_mix_late", "start late"),
        ("grpo_mix_late", "sft_more_late"),
        ("sft_more_late", "start late"),
    }
    circuits = results["circuits"]["comparisons"]["grpo_mix_late"]
    assert circuits["start"] == "start_late"
    assert {"zero/test", "zero/ood_paraphrase"} <= circuits["jaccard"].keys()
    assert set(circuits["changed"]) == {"1e-06", "1e-05", "0.0001", "0.001"} and 0 <= circuits["changed"]["1e-06"] <= 1
    for model in ("start_late", "grpo_mix_late"):
        assert (out / "circuits" / model / "sae" / "sae_features.json").is_file()
    assert results["control_steps"] == 1  # 1 GRPO step x 4 completions = 4 samples: one SFT step of 16
    assert sum(line.endswith("done before, skipped") for line in log) == 0


def test_a_resumed_experiment_skips_finished_stages_and_redoes_an_interrupted_one(study):
    out, _, _ = study
    interrupted = out / "arms" / "sft_more_late" / "seed_1"
    (interrupted / "DONE").unlink()  # as if killed before the stage finished
    (interrupted / "partial.tmp").write_text("half")
    finished = out / "arms" / "grpo_early" / "seed_0" / "evaluation.json"
    before = finished.stat().st_mtime_ns
    log: list[str] = []
    run_experiment(Plan.from_sections(TINY), out, log=log.append)
    skipped = [line for line in log if line.endswith("done before, skipped")]
    assert len(skipped) == 12 - 1  # every stage but the interrupted one
    assert any("arm sft_more_late, seed 1 ..." in line for line in log)
    assert (interrupted / "DONE").is_file() and not (interrupted / "partial.tmp").exists()
    assert finished.stat().st_mtime_ns == before


def test_only_the_named_arms_run(study, tmp_path):
    out, _, _ = study
    log: list[str] = []
    run_experiment(Plan.from_sections(TINY), out, ["grpo_early"], log=log.append)
    assert not any("grpo_mix_late" in line or "sft_more_late" in line for line in log)


def _config(tmp_path: Path, **changes) -> str:
    sections = json.loads(json.dumps(TINY))
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        sections[section][key] = value
    path = tmp_path / "experiment.yaml"
    write_yaml(path, sections)
    return str(path)


@pytest.mark.parametrize(
    ("changes", "flags", "message"),
    [
        ({}, ["--arms", "grpo_early,nope"], "unknown arm(s) nope; this experiment's arms are: grpo_early"),
        (
            {"experiment__arms": [{"name": "ppo_late", "method": "ppo", "start": "late"}]},
            [],
            "arms.0.method: Input should be 'grpo' or 'sft'",
        ),
        ({"task__ood_categories": []}, [], "needs at least one OOD set: task.ood_categories is empty"),
        (
            {"experiment__arms": [{"name": "a", "method": "grpo", "start": "middle"}]},
            [],
            "arm 'a' starts from 'middle'; the starts are: early, late",
        ),
        ({"experiment__starts": {"early": 30, "late": "best"}}, [], "start(s) early=30 lie beyond sft.max_steps=20"),
        (
            {
                "experiment__arms": [
                    {"name": "grpo_mix_late", "method": "grpo", "start": "late", "mix": {"id": 1, "new_suits": 1}}
                ]
            },
            [],
            "unknown mix entry new_suits",
        ),
    ],
)
def test_bad_experiment_input_is_one_line_and_writes_nothing(tmp_path, changes, flags, message):
    out = tmp_path / "study"
    result = CliRunner().invoke(app, ["lm", "experiment", _config(tmp_path, **changes), "--out", str(out), *flags])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_a_start_that_is_not_an_sft_checkpoint_is_refused(study, tmp_path):
    trained, _, _ = study
    rl_final = trained / "arms" / "grpo_early" / "seed_0" / "final"
    out = tmp_path / "study"
    for start, message in (
        (str(rl_final), "is not a checkpoint of an SFT run"),
        (str(tmp_path), "has no tokenizer files"),
        (str(trained / "sft" / "best"), None),  # an SFT run on the same task: accepted
    ):
        config = _config(tmp_path, experiment__starts={"early": 10, "late": start})
        result = CliRunner().invoke(app, ["lm", "experiment", config, "--out", str(out), "--arms", "nope"])
        assert result.exit_code == 2
        if message:
            assert message in result.output and not out.exists()
        else:
            assert "unknown arm(s) nope" in result.output  # got past the start check


def test_a_foreign_folder_is_never_used_as_the_study_folder(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    result = CliRunner().invoke(app, ["lm", "experiment", _config(tmp_path), "--out", str(out)])
    assert result.exit_code == 2 and "not an experiment folder made by reasonlens" in result.output
    assert os.listdir(out) == ["notes.txt"]


def test_a_study_folder_is_not_resumed_with_other_settings(study, tmp_path):
    out, _, _ = study
    config = _config(tmp_path, experiment__seeds=[0, 1, 2])
    result = CliRunner().invoke(app, ["lm", "experiment", config, "--out", str(out)])
    assert result.exit_code == 2 and "holds an experiment with other settings (section(s) experiment)" in result.output


def test_quick_keeps_the_stages_and_shrinks_the_sizes():
    plan = Plan.from_sections(TINY | {"task": {**TINY["task"], "n_train": 5000}})
    quick = plan.quick()
    assert quick.task.n_train == 600 and quick.sft.model.size == "tiny" and quick.rl.max_steps == 2
    assert [a.name for a in quick.experiment.arms] == [a.name for a in plan.experiment.arms]
    assert quick.experiment.seeds == plan.experiment.seeds
    assert control_steps(plan) == 1


def test_intervals_cover_seed_spread_and_test_sampling():
    assert t_interval([0.5]) == (0.5, 0.5)
    low, high = t_interval([0.8, 0.9, 1.0])
    assert low == pytest.approx(0.9 - 4.303 * 0.1 / 3**0.5) and high == pytest.approx(0.9 + 4.303 * 0.1 / 3**0.5)
    same = _interval([0.9, 0.9, 0.9], [300, 300, 300])  # seeds agree: the test sample's noise remains
    assert same["seed_interval"] == [0.9, 0.9] and same["interval"] == same["pooled_interval"]
    assert same["interval"][0] < 0.9 < same["interval"][1]
    spread = _interval([0.4, 0.7, 0.55], [300, 300, 300])
    assert spread["interval"] == [pytest.approx(v) for v in spread["seed_interval"]]


def test_a_fall_after_the_peak_counts_only_beyond_the_intervals():
    def curve(values, n):
        return {
            "points": [
                {"step": 100 * (i + 1), "splits": {"ood": {"accuracy": v, "n": n}}} for i, v in enumerate(values)
            ]
        }

    assert curve_summary(curve([0.5, 0.8, 0.5], 300), 300)["splits"]["ood"]["falls_after_peak"] is True
    assert curve_summary(curve([0.5, 0.8, 0.5], 10), 10)["splits"]["ood"]["falls_after_peak"] is False
    summary = curve_summary(curve([0.5, 0.8, 0.7], 300), 300)["splits"]["ood"]
    assert (summary["peak_step"], summary["peak"], summary["last"]) == (200, 0.8, 0.7)


@pytest.mark.slow
def test_the_documented_quick_study_runs(tmp_path):
    """docs/lm.md's `--quick` command on the CPU config (a few minutes on 2 cores)."""
    config = Path(__file__).parents[1] / "configs" / "lm_experiment_cpu.yaml"
    out = tmp_path / "quick"
    result = CliRunner().invoke(app, ["lm", "experiment", str(config), "--out", str(out), "--quick"])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert results["arms"].keys() == {"grpo_id_early", "grpo_id_late", "grpo_mix_late", "sft_more_late"}
    assert all(arm["seeds"] == 3 for arm in results["arms"].values())
    assert (out / "report.html").is_file() and results["circuits"] is not None
