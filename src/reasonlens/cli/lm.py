"""``reasonlens lm ...``: the SFT-vs-RL card-game workflow of seed 002 — datasets, SFT, RL, evaluation and
the TransformerLens analyses (probes, patching, ablation, SAE). ``scripts/py/*.py`` call these commands.

``--config`` takes one YAML file with optional sections ``task``, ``sft``, ``rl``, ``analysis`` (fields of
the configs in ``reasonlens.lm.config``); flags override single fields. Analyses read the task config
saved with the datasets.

The datasets, models and training modules import the ``[lm]`` extra (datasets, transformers, trl,
transformer_lens): the commands import them when they run, so that ``reasonlens --help`` works without
it. The configs, the analyses (torch and the interp engine) and the error type need no extra.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Annotated

import typer

from reasonlens.cli.errors import needs_extra, user_errors
from reasonlens.lm.analysis.ablation import ablation_scan, compare_importance
from reasonlens.lm.analysis.patching import run_patching
from reasonlens.lm.analysis.probing import run_probes
from reasonlens.lm.analysis.sae_features import run_sae_analysis
from reasonlens.lm.config.analysis_config import AnalysisConfig
from reasonlens.lm.config.task_config import TaskConfig
from reasonlens.lm.config.training_config import RLConfig, SFTConfig
from reasonlens.lm.errors import LMError
from reasonlens.utils.io import read_yaml, write_json

app = typer.Typer(help="SFT vs RL on a small GPT-2 playing a card game (needs the lm extra).", no_args_is_help=True)

ConfigOpt = Annotated[str | None, typer.Option("--config", help="YAML with task / sft / rl / analysis sections")]
DataOpt = Annotated[str, typer.Option("--data", help="dataset directory from `reasonlens lm datasets`")]
OutOpt = Annotated[str, typer.Option("--out", help="output directory")]
MaxOpt = Annotated[int | None, typer.Option("--max-examples", help="examples per split")]
DeviceOpt = Annotated[str | None, typer.Option(help="cpu | cuda | auto")]
SplitsOpt = Annotated[str | None, typer.Option("--splits", help="comma-separated splits (default: test + all ood_*)")]


@contextlib.contextmanager
def lm_errors():
    """The lm extra must be installed; models and tokenizers are local, so the hub is never called."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with needs_extra("lm"), user_errors():
        yield


def _section(config_file: str | None, name: str) -> dict:
    if not config_file:
        return {}
    if not Path(config_file).is_file():
        raise LMError(f"config file {config_file} does not exist")
    data = read_yaml(config_file) or {}
    allowed = ("task", "sft", "rl", "analysis")
    unknown = [k for k in data if k not in allowed]
    if unknown:
        raise LMError(f"{config_file}: unknown section(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    return dict(data.get(name) or {})


def _set(fields: dict, **overrides) -> dict:
    fields.update({k: v for k, v in overrides.items() if v is not None})
    return fields


def _split_list(text: str | None) -> list[str] | None:
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def run_name(checkpoint: str) -> str:
    """``runs/x/sft/best`` → ``sft``; any other directory → its own name."""
    path = Path(checkpoint)
    return path.parent.name if path.name in ("best", "final") else path.name


def _load(data: str):
    from reasonlens.lm.tasks.dataset import load_datasets

    return load_datasets(data)


def _hooked(checkpoint: str, device: str):
    from reasonlens.lm.models.conversion import to_hooked_transformer

    return to_hooked_transformer(checkpoint, device)


def _analysis_config(config: str | None, out: str, **overrides) -> AnalysisConfig:
    return AnalysisConfig.from_dict(_set(_section(config, "analysis"), output_dir=out, **overrides))


def _print_accuracies(metrics: dict) -> None:
    for split, values in metrics["splits"].items():
        typer.echo(f"  {split:<26} accuracy {values['accuracy']:.3f}  (n={values['n']})")


@app.command()
def datasets(
    out: OutOpt = "runs/lm/data",
    config: ConfigOpt = None,
    n_train: Annotated[int | None, typer.Option(help="training examples")] = None,
    n_test: Annotated[int | None, typer.Option(help="ID test examples")] = None,
    n_ood: Annotated[int | None, typer.Option(help="examples per OOD set")] = None,
    families: Annotated[str | None, typer.Option(help="comma-separated rule families")] = None,
    ood: Annotated[str | None, typer.Option("--ood", help="comma-separated OOD categories")] = None,
    seed: Annotated[int | None, typer.Option(help="dataset seed")] = None,
) -> None:
    """Build train/val/test and one test set per OOD category; save them (HF datasets) with the task config."""
    with lm_errors():
        from reasonlens.lm.tasks.dataset import build_sft_datasets, save_datasets

        fields = _set(_section(config, "task"), n_train=n_train, n_test=n_test, n_ood=n_ood, seed=seed)
        _set(fields, families=_split_list(families), ood_categories=_split_list(ood))
        task = TaskConfig.from_dict(fields)
        built = build_sft_datasets(task)
        save_datasets(built, out, task)
        typer.echo(f"wrote {out}: " + ", ".join(f"{name} {len(split)}" for name, split in built.items()))


@app.command()
def sft(
    data: DataOpt = "runs/lm/data",
    out: OutOpt = "runs/lm/sft",
    config: ConfigOpt = None,
    size: Annotated[str | None, typer.Option(help="model size: tiny | small | medium | gpt2")] = None,
    epochs: Annotated[float | None, typer.Option(help="training epochs")] = None,
    max_steps: Annotated[int | None, typer.Option(help="optimizer steps (overrides epochs)")] = None,
    batch_size: Annotated[int | None, typer.Option(help="batch size")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="learning rate")] = None,
    eval_steps: Annotated[int | None, typer.Option(help="steps between validation + checkpoint")] = None,
    seed: Annotated[int | None, typer.Option(help="training seed")] = None,
    device: DeviceOpt = None,
) -> None:
    """Train a GPT-2 from scratch on the datasets (loss on the answer); keep the best; evaluate ID and OOD."""
    with lm_errors():
        from reasonlens.lm.training.sft_trainer import run_sft

        built, task = _load(data)
        fields = _set(_section(config, "sft"), output_dir=out, epochs=epochs, max_steps=max_steps)
        _set(fields, batch_size=batch_size, learning_rate=lr, eval_steps=eval_steps, seed=seed, device=device)
        if size is not None:
            fields["model"] = {**fields.get("model", {}), "size": size}
        path, metrics = run_sft(task, SFTConfig.from_dict(fields), datasets=built)
        typer.echo(f"best checkpoint: {path}")
        _print_accuracies(metrics)


@app.command()
def rl(
    init: Annotated[str, typer.Option("--init", help="SFT checkpoint directory")] = "runs/lm/sft/best",
    data: DataOpt = "runs/lm/data",
    out: OutOpt = "runs/lm/rl",
    config: ConfigOpt = None,
    max_steps: Annotated[int | None, typer.Option(help="GRPO steps")] = None,
    batch_size: Annotated[int | None, typer.Option(help="completions per step")] = None,
    num_generations: Annotated[int | None, typer.Option(help="completions per prompt")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="learning rate")] = None,
    mix: Annotated[str | None, typer.Option(help="prompt mix, e.g. id=0.8,paraphrase=0.2")] = None,
    format_reward: Annotated[float | None, typer.Option(help="bonus for a parseable answer")] = None,
    eval_every: Annotated[int | None, typer.Option(help="steps between success-per-distribution evaluations")] = None,
    seed: Annotated[int | None, typer.Option(help="RL seed")] = None,
    device: DeviceOpt = None,
) -> None:
    """GRPO from an SFT checkpoint with the text-game reward; curves per distribution; evaluate ID and OOD."""
    with lm_errors():
        from reasonlens.lm.training.rl_trainer import run_rl

        built, task = _load(data)
        fields = _set(_section(config, "rl"), output_dir=out, max_steps=max_steps, batch_size=batch_size)
        _set(fields, num_generations=num_generations, learning_rate=lr, format_reward=format_reward)
        _set(fields, eval_every=eval_every, seed=seed, device=device)
        if mix:
            try:
                fields["mix"] = {k.strip(): float(v) for k, v in (item.split("=") for item in mix.split(","))}
            except ValueError:
                raise LMError(f"--mix {mix!r}: expected name=share pairs, e.g. id=0.8,paraphrase=0.2") from None
        path, metrics = run_rl(task, RLConfig.from_dict(fields), init, datasets=built)
        typer.echo(f"RL checkpoint: {path}")
        _print_accuracies(metrics)


@app.command()
def evaluate(
    checkpoint: Annotated[str, typer.Argument(help="checkpoint directory (model + tokenizer)")],
    data: DataOpt = "runs/lm/data",
    out: Annotated[str | None, typer.Option("--out", help="evaluation JSON to write")] = None,
    splits: SplitsOpt = None,
    max_examples: MaxOpt = 300,
    device: DeviceOpt = "cpu",
) -> None:
    """Accuracy on the ID test set and every OOD set → the standard evaluation JSON."""
    with lm_errors():
        from reasonlens.lm.training.evaluation import evaluate_checkpoint

        built, _ = _load(data)
        metrics = evaluate_checkpoint(checkpoint, built, _split_list(splits), max_examples, out, device or "cpu")
        _print_accuracies(metrics)
        if out:
            typer.echo(f"wrote {out}")


@app.command()
def compare(
    evaluations: Annotated[list[str], typer.Argument(help="evaluation.json files (name=path or path)")],
) -> None:
    """Accuracies of several checkpoints side by side, one row per split."""
    with lm_errors():
        from reasonlens.lm.training.evaluation import accuracy_table

        results = {}
        for item in evaluations:
            name, _, path = item.rpartition("=")
            if not Path(path).is_file():
                raise LMError(f"evaluation file {path} does not exist")
            results[name or Path(path).parent.name] = json.loads(Path(path).read_text())
        names = list(results)
        typer.echo(f"{'split':<26}" + "".join(f"{n:>10}" for n in names))
        for row in accuracy_table(results):
            cells = "".join(f"{row[n]:>10.3f}" if row[n] is not None else f"{'-':>10}" for n in names)
            typer.echo(f"{row['split']:<26}{cells}")


@app.command()
def probes(
    checkpoint: Annotated[str, typer.Argument(help="checkpoint directory")],
    data: DataOpt = "runs/lm/data",
    out: OutOpt = "runs/lm/analysis/probes",
    config: ConfigOpt = None,
    splits: SplitsOpt = None,
    max_examples: MaxOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Linear probes per layer, position and distribution (rule family, answer, total, colour sums)."""
    with lm_errors():
        built, task = _load(data)
        cfg = _analysis_config(config, out, splits=_split_list(splits), max_examples=max_examples, device=device)
        model, tokenizer = _hooked(checkpoint, cfg.device)
        report = run_probes(model, tokenizer, built, cfg, task.colours, out)
        final = [r for r in report["probes"] if r["position"] == "final" and r["split"] == report["splits"][0]]
        for row in final:
            scores = f"test {row['test_score']:.3f}  control {row['control_score']:.3f}"
            typer.echo(f"  {row['layer']:<4} {row['target']:<12} {scores}")
        typer.echo(f"wrote {out}/probes.json")


@app.command()
def patching(
    checkpoint: Annotated[str, typer.Argument(help="checkpoint directory")],
    data: DataOpt = "runs/lm/data",
    out: OutOpt = "runs/lm/analysis/patching",
    config: ConfigOpt = None,
    categories: Annotated[str | None, typer.Option(help="paraphrase,unseen_colour,more_cards")] = None,
    pairs: Annotated[int | None, typer.Option(help="pairs per category")] = None,
    positions: Annotated[int | None, typer.Option(help="last K positions to patch")] = None,
    method: Annotated[
        str | None, typer.Option(help="exact (default) or attribution: the first-order estimate, a screen")
    ] = None,
    device: DeviceOpt = None,
) -> None:
    """Patch ID activations into OOD prompts and back, per layer, position, head (batched interp sweeps)."""
    with lm_errors():
        _, task = _load(data)
        cfg = _analysis_config(
            config,
            out,
            patch_categories=_split_list(categories),
            patch_pairs=pairs,
            patch_positions=positions,
            patch_method=method,
        )
        cfg = cfg.model_copy(update={"device": device or cfg.device})
        model, tokenizer = _hooked(checkpoint, cfg.device)
        report = run_patching(model, tokenizer, task, cfg, out)
        for category, result in report["categories"].items():
            typer.echo(f"  {category}: ID acc {result['id_accuracy']:.3f}, OOD acc {result['ood_accuracy']:.3f}")
        typer.echo(f"wrote {out}/patching.json")


@app.command()
def ablation(
    checkpoint: Annotated[str, typer.Argument(help="checkpoint directory")],
    data: DataOpt = "runs/lm/data",
    out: OutOpt = "runs/lm/analysis/ablation",
    config: ConfigOpt = None,
    splits: SplitsOpt = None,
    ops: Annotated[str | None, typer.Option(help="zero,mean")] = None,
    spec: Annotated[
        list[str] | None, typer.Option("--spec", help="extra component, e.g. blocks.1.mlp.hook_post:5")
    ] = None,
    top_k: Annotated[int | None, typer.Option(help="size of the important-head sets")] = None,
    compare_with: Annotated[
        str | None, typer.Option("--compare", help="another ablation.json: Jaccard + profiles")
    ] = None,
    max_examples: MaxOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Zero / mean ablation of every head and MLP: importance per distribution; optional SFT-vs-RL comparison."""
    with lm_errors():
        built, _ = _load(data)
        cfg = _analysis_config(
            config,
            out,
            splits=_split_list(splits),
            ablation_ops=_split_list(ops),
            top_k=top_k,
            max_examples=max_examples,
            device=device,
        )
        model, tokenizer = _hooked(checkpoint, cfg.device)
        report = ablation_scan(model, tokenizer, built, cfg, spec, out, name=run_name(checkpoint))
        for op, per_split in report["important"].items():
            for split, heads in per_split.items():
                typer.echo(f"  {op:<5} {split:<26} top heads: {', '.join(heads)}")
        typer.echo(f"wrote {out}/ablation.json")
        if compare_with:
            if not Path(compare_with).is_file():
                raise LMError(f"--compare {compare_with}: no such ablation.json")
            other = json.loads(Path(compare_with).read_text())
            other.setdefault("name", Path(compare_with).parent.parent.name)  # .../<run>/ablation/ablation.json
            comparison = compare_importance(other, report)
            write_json(Path(out) / "comparison.json", comparison)
            for key, value in comparison["jaccard"].items():
                typer.echo(f"  Jaccard {key}: {value:.2f}")
            typer.echo(f"wrote {out}/comparison.json")


@app.command()
def sae(
    checkpoint: Annotated[str, typer.Argument(help="checkpoint directory")],
    data: DataOpt = "runs/lm/data",
    out: OutOpt = "runs/lm/analysis/sae",
    config: ConfigOpt = None,
    layer: Annotated[int | None, typer.Option(help="residual stream after this block (default: last)")] = None,
    steps: Annotated[int | None, typer.Option(help="SAE training steps")] = None,
    expansion: Annotated[int | None, typer.Option(help="d_sae / d_model")] = None,
    l1: Annotated[float | None, typer.Option("--l1", help="L1 coefficient")] = None,
    max_examples: MaxOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Train an SAE (SAELens) on the residual stream; dead fraction, explained variance, feature analysis."""
    with lm_errors():
        built, _ = _load(data)
        cfg = _analysis_config(
            config,
            out,
            sae_layer=layer,
            sae_steps=steps,
            sae_expansion=expansion,
            sae_l1=l1,
            max_examples=max_examples,
            device=device,
        )
        model, tokenizer = _hooked(checkpoint, cfg.device)
        report = run_sae_analysis(model, tokenizer, built, cfg, out)
        stats, counts = report["sae"], report["classes"]["counts"]
        typer.echo(
            f"  SAE on {report['site']}: explained variance {stats['explained_variance']:.3f}, "
            f"L0 {stats['l0']:.1f}, dead {stats['dead_fraction']:.1%}"
        )
        typer.echo(f"  features: {counts}")
        typer.echo(f"wrote {out}/sae (SAELens layout) and {out}/sae_features.json")


@app.command()
def experiment(
    config: Annotated[str, typer.Argument(help="YAML with task / sft / rl / analysis / experiment sections")],
    out: OutOpt = "runs/lm/experiment",
    quick: Annotated[bool, typer.Option("--quick", help="tiny sizes, same stages: a few minutes")] = False,
    arms: Annotated[str | None, typer.Option("--arms", help="comma-separated arms to run (default: all)")] = None,
) -> None:
    """The whole SFT-vs-RL study: datasets, SFT (two regimes), RL arms x seeds, evaluation, circuits, report.
    Resumable: run it again with the same --out to continue where it stopped."""
    with lm_errors():
        from reasonlens.lm.experiment.runner import Plan, run_experiment

        if not Path(config).is_file():
            raise LMError(f"config file {config} does not exist")
        plan = Plan.from_sections(read_yaml(config) or {})
        plan = plan.quick() if quick else plan
        selected = _split_list(arms)
        plan.select(selected)  # an unknown arm stops here, before the study folder is made
        results = run_experiment(plan, out, selected, log=typer.echo)
        for name, arm in results["arms"].items():
            cells = ", ".join(f"{s.removeprefix('ood_')} {v['mean']:.3f}" for s, v in arm["splits"].items())
            typer.echo(f"  {name:<16} {cells}")


def command(name: str):
    """The click command behind ``reasonlens lm NAME`` (what ``scripts/py/*.py`` run as a program)."""
    return typer.main.get_command(app).commands[name]
