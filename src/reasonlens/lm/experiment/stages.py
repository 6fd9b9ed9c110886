"""The work of each stage of the SFT-vs-RL experiment (:mod:`reasonlens.lm.experiment.runner` decides
which stages run): each takes the validated plan and writes into the folder it is given."""

from __future__ import annotations

import random
from pathlib import Path

import torch

from reasonlens.lm.analysis.ablation import ablation_scan, compare_importance
from reasonlens.lm.analysis.probing import run_probes
from reasonlens.lm.analysis.sae_features import run_sae_analysis
from reasonlens.lm.analysis.weight_updates import weight_updates
from reasonlens.lm.config.experiment_config import ArmConfig
from reasonlens.lm.experiment.runner import control_steps, start_checkpoint
from reasonlens.lm.models.conversion import to_hooked_transformer
from reasonlens.lm.models.lm_loader import load_checkpoint
from reasonlens.lm.tasks.dataset import build_sft_datasets, load_datasets, save_datasets
from reasonlens.lm.training.evaluation import evaluate_checkpoint, evaluate_steps
from reasonlens.lm.training.rl_trainer import run_rl
from reasonlens.lm.training.sft_trainer import run_sft
from reasonlens.utils.io import write_json


def datasets(plan, folder: Path) -> None:
    save_datasets(build_sft_datasets(plan.task), folder / "set", plan.task)


def load(data: Path, n_train: int | None = None):
    """The experiment's datasets; ``n_train``: only the first n training examples (the small-data regime)."""
    built, _ = load_datasets(data / "set")
    if n_train is not None:
        built["train"] = built["train"].select(range(n_train))
    return built


def _curve(plan, run: Path, built) -> None:
    """Accuracy at every kept step on the first training examples (does the model fit what it trained
    on?), the ID test set and every OOD set: ``curve_examples`` of each."""
    splits = ["train", "test", *(name for name in built if name.startswith("ood_"))]
    evaluate_steps(run, built, splits, plan.experiment.curve_examples, out=run / "curve.json")


def _train_sft(plan, built, folder: Path, **fields) -> None:
    sft = plan.sft.model_dump()
    sft.update(output_dir=str(folder), eval_examples=plan.experiment.eval_examples, **fields)
    sft["keep_steps"] = sorted({*sft["keep_steps"], sft["max_steps"]})  # the curve ends at the last step
    run_sft(plan.task, sft, datasets=built)
    _curve(plan, folder, built)


def sft_large(plan, data: Path, folder: Path) -> None:
    keep = sorted({*plan.sft.keep_steps, *plan.experiment.kept_steps()})
    _train_sft(plan, load(data), folder, keep_steps=keep)


def sft_small(plan, data: Path, folder: Path) -> None:
    small = plan.experiment.small_data
    _train_sft(plan, load(data, small.n_train), folder, max_steps=small.max_steps, keep_steps=small.keep_steps)


def evaluate_start(plan, data: Path, checkpoint: Path, folder: Path) -> None:
    evaluate_checkpoint(
        checkpoint, load(data), max_examples=plan.experiment.eval_examples, out=folder / "evaluation.json"
    )


def run_arm(plan, arm: ArmConfig, seed: int, data: Path, start: Path, folder: Path) -> None:
    """One arm and seed from ``start``: GRPO on the arm's mix, or the SFT control on as many ID samples."""
    built = load(data)
    if arm.method == "grpo":
        rl = plan.rl.model_dump()
        rl.update(output_dir=str(folder), seed=seed, eval_examples=plan.experiment.eval_examples)
        if arm.mix is not None:
            rl["mix"] = arm.mix
        run_rl(plan.task, rl, start, datasets=built)
        return
    steps = control_steps(plan)
    samples = steps * plan.sft.batch_size
    order = random.Random(f"control-{seed}").sample(range(len(built["train"])), min(samples, len(built["train"])))
    built["train"] = built["train"].select(order)  # one pass over a fresh sample of the ID training set
    sft = plan.sft.model_dump()
    sft.update(
        output_dir=str(folder),
        init_from=str(start),
        max_steps=steps,
        eval_steps=steps,  # one validation, at the end: the control's model is its last, as an RL arm's
        learning_rate=plan.experiment.control_learning_rate,
        keep_steps=[],
        seed=seed,
        eval_examples=plan.experiment.eval_examples,
    )
    run_sft(plan.task, sft, datasets=built)


def arm_checkpoint(folder: Path) -> Path:
    """The model an arm's run ends with: ``final/`` (GRPO) or ``best/`` (the SFT control's last step)."""
    return folder / "final" if (folder / "final").is_dir() else folder / "best"


def circuits(plan, out: Path, arm_names: list[str], folder: Path) -> None:
    """Per analysed arm (on ``circuit_seed``) and its start: ablation, probes and SAE; then start vs arm."""
    experiment = plan.experiment
    seed = experiment.circuit_seed if experiment.circuit_seed is not None else experiment.seeds[0]
    built = load(out / "data")
    models = {}
    for name in arm_names:
        arm = experiment.arm(name)
        models[f"start_{arm.start}"] = start_checkpoint(out, plan, arm.start)
        models[name] = arm_checkpoint(out / "arms" / name / f"seed_{seed}")
    reports = {name: _analyse(plan, checkpoint, built, folder / name, name) for name, checkpoint in models.items()}
    comparisons = {}
    for name in arm_names:
        before = f"start_{experiment.arm(name).start}"
        old, _ = load_checkpoint(models[before])
        new, _ = load_checkpoint(models[name])
        comparisons[name] = {
            "start": before,
            "ablation": compare_importance(reports[before]["ablation"], reports[name]["ablation"], (before, name)),
            "weight_updates": weight_updates(old, new),
        }
    write_json(
        folder / "comparisons.json",
        {"seed": seed, "models": {k: str(v) for k, v in models.items()}, "comparisons": comparisons},
    )


def _analyse(plan, checkpoint: Path, built, folder: Path, name: str) -> dict:
    config = plan.analysis.model_copy(update={"device": "cpu"})
    model, tokenizer = to_hooked_transformer(str(checkpoint), "cpu")
    with torch.no_grad():
        ablation = ablation_scan(model, tokenizer, built, config, None, folder / "ablation", name=name)
    probes = run_probes(model, tokenizer, built, config, plan.task.colours, folder / "probes")
    sae = run_sae_analysis(model, tokenizer, built, config, folder / "sae")
    return {"ablation": ablation, "probes": probes, "sae": sae}
