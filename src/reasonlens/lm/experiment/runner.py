"""The SFT-vs-RL experiment end to end, one folder per stage, resumable: datasets → SFT in two regimes
(curves over kept steps) → the start checkpoints → every arm × seed → circuits on one seed → results and
report.

The study folder::

    <out>/experiment.yaml               the whole config as run (a resume must ask for the same)
    <out>/data/                         datasets: train, val, test, ood_*
    <out>/sft/                          large regime: best/, steps/step_N/, evaluation.json, curve.json
    <out>/sft_small/                    memorisation regime (few examples, trained to fit them), curve.json
    <out>/starts/<name>.json            evaluation of each start checkpoint
    <out>/arms/<arm>/seed_<s>/          one run per arm and seed: final/ (or best/), evaluation.json
    <out>/circuits/<model>/             ablation/, probes/, sae/ of each analysed model
    <out>/circuits/comparisons.json     start vs arm: ablation Jaccard, weight updates, probes, SAE
    <out>/results.json, report.html     every number, and the page with the curves and tables

A stage is finished when its folder holds ``DONE``; a folder without it (an interrupted stage) is removed
and redone, so a resumed experiment skips finished stages and never reads half-written ones. Everything a
config can get wrong is checked before the study folder is made.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from reasonlens.lm.config.analysis_config import AnalysisConfig
from reasonlens.lm.config.experiment_config import ExperimentConfig
from reasonlens.lm.config.task_config import TaskConfig
from reasonlens.lm.config.training_config import RLConfig, SFTConfig
from reasonlens.lm.errors import LMError
from reasonlens.lm.models.lm_loader import check_checkpoint
from reasonlens.utils.io import OWNER_FILE, FolderError, is_owned, mark_owned, read_yaml, write_json, write_yaml

KIND = "lm experiment"
DONE = "DONE"
SECTIONS = ("task", "sft", "rl", "analysis", "experiment")


@dataclass
class Plan:
    """The validated configs of one experiment."""

    task: TaskConfig
    sft: SFTConfig
    rl: RLConfig
    analysis: AnalysisConfig
    experiment: ExperimentConfig

    @classmethod
    def from_sections(cls, sections: dict) -> Plan:
        unknown = [k for k in sections if k not in SECTIONS]
        if unknown:
            raise LMError(f"unknown config section(s) {', '.join(unknown)}; allowed: {', '.join(SECTIONS)}")
        plan = cls(
            TaskConfig.from_dict(sections.get("task") or {}),
            SFTConfig.from_dict(sections.get("sft") or {}),
            RLConfig.from_dict(sections.get("rl") or {}),
            AnalysisConfig.from_dict(sections.get("analysis") or {}),
            ExperimentConfig.from_dict(sections.get("experiment") or {}),
        )
        plan.check()
        return plan

    def check(self) -> None:
        """What no single section can check: the experiment against the task and the recipes."""
        task, sft, experiment = self.task, self.sft, self.experiment
        if not task.ood_categories:
            raise LMError("the experiment needs at least one OOD set: task.ood_categories is empty")
        if sft.init_from is not None:
            raise LMError("sft.init_from: the experiment trains its SFT model from scratch; remove init_from")
        if sft.max_steps < 1:
            raise LMError("sft.max_steps: the experiment needs a step count (its starts are kept steps), not epochs")
        for name, start in experiment.starts.items():
            if isinstance(start, str) and start != "best":
                check_sft_start(name, start, task)
        late = [f"{n}={s}" for n, s in experiment.starts.items() if isinstance(s, int) and s > sft.max_steps]
        if late:
            raise LMError(f"start(s) {', '.join(late)} lie beyond sft.max_steps={sft.max_steps}")
        small = experiment.small_data
        if small is not None and small.n_train > task.n_train:
            raise LMError(f"small_data.n_train={small.n_train} is more than task.n_train={task.n_train}")
        allowed = ["id", *task.ood_categories]
        for arm in experiment.arms:
            unknown = [name for name in (arm.mix or {}) if name not in allowed]
            if unknown:
                raise LMError(
                    f"arm {arm.name!r}: unknown mix entry {', '.join(unknown)}; allowed: {', '.join(allowed)}"
                )
            if arm.mix is not None:
                RLConfig.from_dict({**self.rl.model_dump(), "mix": arm.mix})  # shares: non-negative, positive sum

    def sections(self) -> dict:
        return {name: getattr(self, name).model_dump(mode="json") for name in SECTIONS}

    def select(self, names: list[str] | None) -> list:
        """The arms to run: all, or those named (an unknown name is an error listing the arms)."""
        if not names:
            return list(self.experiment.arms)
        known = [arm.name for arm in self.experiment.arms]
        unknown = [n for n in names if n not in known]
        if unknown:
            raise LMError(f"unknown arm(s) {', '.join(unknown)}; this experiment's arms are: {', '.join(known)}")
        return [self.experiment.arm(n) for n in names]

    def quick(self) -> Plan:
        """A few-minute version of the same study (docs, tests, a first look): tiny sizes, same stages."""
        sections = self.sections()
        sections["task"].update(n_train=min(self.task.n_train, 600), n_val=40, n_test=40, n_ood=40)
        sections["sft"].update(max_steps=60, eval_steps=30, eval_examples=40, keep_steps=[])
        sections["sft"]["model"].update(size="tiny")
        sections["rl"].update(max_steps=2, batch_size=8, num_generations=4, eval_every=1000, n_prompts=64)
        sections["rl"]["eval_examples"] = 40
        sections["analysis"].update(max_examples=24, sae_steps=50, positions=["final"], top_k=2)
        experiment = sections["experiment"]
        experiment.update(eval_examples=40, curve_examples=20)
        experiment["starts"] = {n: (30 if isinstance(s, int) else s) for n, s in experiment["starts"].items()}
        if experiment["small_data"] is not None:
            experiment["small_data"] = {"n_train": 100, "max_steps": 40, "keep_steps": [20]}
        return Plan.from_sections(sections)


def check_sft_start(name: str, path: str, task: TaskConfig) -> None:
    """A start given as a path must be a checkpoint of an SFT run (``<run>/best`` or ``<run>/steps/step_N``)
    trained on this experiment's task."""
    checkpoint = check_checkpoint(path)
    run = checkpoint.parent.parent if checkpoint.parent.name == "steps" else checkpoint.parent
    saved = read_yaml(run / "config.yaml") if (run / "config.yaml").is_file() else None
    if not isinstance(saved, dict) or "sft" not in saved or "rl" in saved:
        raise LMError(
            f"start {name!r}: {path} is not a checkpoint of an SFT run (its run folder {run} has no SFT "
            "config.yaml); give a run's best/ or steps/step_N/ from `reasonlens lm sft`"
        )
    differing = [k for k, v in task.model_dump(mode="json").items() if saved.get("task", {}).get(k) != v]
    if differing:
        raise LMError(f"start {name!r}: {path} was trained on another task ({', '.join(differing)} differ)")


def prepare_folder(out: Path, plan: Plan) -> bool:
    """Make the study folder, or check that an existing one is a study with the same config; return whether
    it is resumed. Nothing is written when the check fails."""
    if out.exists():
        if not out.is_dir():
            raise FolderError(f"{out} is a file, not a folder; choose another --out")
        if any(out.iterdir()):
            saved = out / "experiment.yaml"
            if not is_owned(out) or not saved.is_file():
                raise FolderError(
                    f"{out} is not an experiment folder made by reasonlens (no {OWNER_FILE} and experiment.yaml); "
                    "choose another --out"
                )
            differing = [k for k, v in plan.sections().items() if (read_yaml(saved) or {}).get(k) != v]
            if differing:
                raise LMError(
                    f"{out} holds an experiment with other settings (section(s) {', '.join(differing)}); "
                    "choose another --out to run this config"
                )
            return True
    out.mkdir(parents=True, exist_ok=True)
    mark_owned(out, KIND)
    write_yaml(out / "experiment.yaml", plan.sections())
    return False


class Stages:
    """Runs named stages once each: a stage's folder with ``DONE`` is skipped; one without it is cleared first."""

    def __init__(self, total: int, log: Callable[[str], None]):
        self.total, self.index, self.log, self.seconds = total, 0, log, {}

    def run(self, name: str, folder: Path, work: Callable[[Path], None]) -> None:
        self.index += 1
        prefix = f"[{self.index}/{self.total}] {name}"
        if (folder / DONE).is_file():
            self.log(f"{prefix}: done before, skipped")
            return
        if folder.exists():
            shutil.rmtree(folder)  # an interrupted stage, inside our own study folder
        folder.mkdir(parents=True)
        started = time.perf_counter()
        self.log(f"{prefix} ...")
        work(folder)
        seconds = time.perf_counter() - started
        write_json(folder / DONE, {"seconds": seconds})
        self.log(f"{prefix}: {seconds:.0f} s")


def stage_seconds(folder: Path) -> float | None:
    marker = folder / DONE
    return json.loads(marker.read_text())["seconds"] if marker.is_file() else None


def control_steps(plan: Plan) -> int:
    """Optimizer steps of the SFT control that see as many samples as one GRPO arm's completions."""
    return math.ceil(plan.rl.max_steps * plan.rl.batch_size / plan.sft.batch_size)


def start_checkpoint(out: Path, plan: Plan, start: str) -> Path:
    value = plan.experiment.starts[start]
    if isinstance(value, int):
        return out / "sft" / "steps" / f"step_{value}"
    return out / "sft" / "best" if value == "best" else Path(value)


def run_experiment(
    plan: Plan, out: str | Path, arms: list[str] | None = None, log: Callable[[str], None] = print
) -> dict:
    """Run (or resume) every stage of ``plan`` into ``out``; return the results (also in results.json)."""
    # the stages import the trainers (transformers, trl) and read this module's layout helpers
    from reasonlens.lm.experiment import stages
    from reasonlens.lm.experiment.report import write_report
    from reasonlens.lm.experiment.results import collect_results

    out = Path(out)
    selected = plan.select(arms)
    experiment = plan.experiment
    circuit_arms = [a.name for a in selected if a.name in (experiment.circuit_arms or [a.name for a in selected])]
    n_stages = 2 + (experiment.small_data is not None) + len(experiment.starts)
    n_stages += len(selected) * len(experiment.seeds) + (1 if circuit_arms else 0)
    resumed = prepare_folder(out, plan)
    log(f"{'resuming' if resumed else 'starting'} the experiment in {out} ({n_stages} stages)")
    runner = Stages(n_stages, log)

    runner.run("datasets", out / "data", lambda folder: stages.datasets(plan, folder))
    runner.run("SFT, large regime", out / "sft", lambda folder: stages.sft_large(plan, out / "data", folder))
    if experiment.small_data is not None:
        runner.run(
            "SFT, small-data regime", out / "sft_small", lambda folder: stages.sft_small(plan, out / "data", folder)
        )
    for name in experiment.starts:
        checkpoint = start_checkpoint(out, plan, name)
        runner.run(
            f"start {name} ({checkpoint.relative_to(out) if checkpoint.is_relative_to(out) else checkpoint})",
            out / "starts" / name,
            lambda folder, checkpoint=checkpoint: stages.evaluate_start(plan, out / "data", checkpoint, folder),
        )
    for arm in selected:
        for seed in experiment.seeds:
            runner.run(
                f"arm {arm.name}, seed {seed}",
                out / "arms" / arm.name / f"seed_{seed}",
                lambda folder, arm=arm, seed=seed: stages.run_arm(
                    plan, arm, seed, out / "data", start_checkpoint(out, plan, arm.start), folder
                ),
            )
    if circuit_arms:
        runner.run("circuits", out / "circuits", lambda folder: stages.circuits(plan, out, circuit_arms, folder))
    results = collect_results(plan, out)
    write_json(out / "results.json", results)
    write_report(results, out)
    log(f"wrote {out / 'results.json'} and {out / 'report.html'}")
    return results
