"""Exploration studies (seed 003 phase 5): one YAML names a base training recipe and its variants; one
command trains every variant and measures what the study is about, into one table.

Per variant:

- parameters, training seconds, held-out exact / token accuracy (the run's last evaluation) and its
  learning curve (every evaluation);
- ``changed``: token accuracy on the cells the model must change (a Sudoku's blanks, a maze's path);
- ``saved_mib``: the bytes autograd saves for one training step (the gradient's memory);
- participation ratios PR_H / PR_L; ``h_decay`` (z_H's last over first relative residual: < 1 means
  z_H converges across cycles); ``l_reset`` (the mean ratio of z_L's residual right after each z_H
  update to the one right before: > 1 means each high-level update resets the low-level module, the
  paper's hierarchical picture);
- ``hoyer_H`` / ``hoyer_L``: Hoyer sparsity of the states (0: all entries equal in size; Gaussian
  states of 64 units give 0.23; 1: one-hot);
- with ``noise_stds``: exact accuracy under state noise of each std (``exact@noise0.3``; ``exact@noise0``
  is the same puzzles without noise);
- for a variant trained with ``init_from`` (transfer): the parameters taken from the source.

The dynamics measures use the first ``puzzles`` test puzzles.

    name: depth_vs_width
    base: configs/train/cpu_sudoku_4x4.yaml
    overrides: [epochs=3, data_path=datasets/sudoku-4x4-small]
    variants:
      h64_layers2: [model.hidden_size=64, model.H_layers=2, model.L_layers=2]
      h128_layers1: [model.hidden_size=128, model.H_layers=1, model.L_layers=1]

``reasonlens study CONFIG --out DIR`` trains into ``DIR/<variant>`` (a trained variant is reused unless
``--retrain``) and writes ``DIR/study.json``, ``DIR/study.md`` and ``DIR/curves.png`` (held-out exact
accuracy at each evaluation of each variant). ``--set seed=1`` adds an override to every variant (a
repeat with another seed); ``--only a,b`` runs some variants.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from pydantic import Field, field_validator

from reasonlens.hrm.analysis import dynamics
from reasonlens.hrm.analysis.adapter import HRMAdapter
from reasonlens.hrm.training.losses import ACTLossHead
from reasonlens.hrm.training.trainer import load_train_config, train
from reasonlens.interp import InterpError
from reasonlens.interp.report import pyplot, save_figure
from reasonlens.utils.config import StrictConfig
from reasonlens.utils.io import atomic_write, read_yaml, write_json
from reasonlens.utils.memory import count_saved_bytes
from reasonlens.utils.paths import check_file_name


class StudyConfig(StrictConfig):
    name: str
    base: str = Field(description="a training recipe (configs/train/*.yaml)")
    overrides: list[str] = Field(default_factory=list, description="key=value for every variant")
    variants: dict[str, list[str]] = Field(min_length=1, description="variant name -> key=value overrides")
    puzzles: int = Field(100, ge=2, description="test puzzles for the dynamics measures")
    noise_stds: list[float] = Field(
        default_factory=list, description="also measure exact accuracy with state noise of these stds"
    )

    @field_validator("variants")
    @classmethod
    def _names_are_folder_names(cls, variants: dict[str, list[str]]) -> dict[str, list[str]]:
        for name in variants:  # each variant trains into OUT/<name>
            check_file_name(name, "variant name")
        return variants

    @field_validator("noise_stds")
    @classmethod
    def _non_negative(cls, values: list[float]) -> list[float]:
        if any(v < 0 for v in values):
            raise ValueError(f"noise_stds must be >= 0, got {values}")
        return values


def load_study(path: str | Path) -> StudyConfig:
    return StudyConfig.from_dict(read_yaml(path))


def select(config: StudyConfig, overrides: list[str] = (), only: list[str] | None = None) -> StudyConfig:
    """The study with ``overrides`` appended to every variant's (``seed=1`` repeats it with another seed)
    and only the variants in ``only``."""
    if only is not None:
        unknown = [name for name in only if name not in config.variants]
        if unknown:
            raise InterpError(f"unknown variant {unknown[0]!r}; the study has: {', '.join(config.variants)}")
    variants = {name: v for name, v in config.variants.items() if only is None or name in only}
    return config.model_copy(update={"overrides": [*config.overrides, *overrides], "variants": variants})


def convergence_summary(result: dict, l_cycles: int) -> dict:
    modules = result["modules"]
    out = {}
    if "inner.H_level" in modules:
        h = modules["inner.H_level"]["relative"]
        out["h_decay"] = h[-1] / h[0] if h and h[0] > 0 else None
    if "inner.L_level" in modules and "inner.H_level" in modules and l_cycles > 1:
        l_res = np.asarray(modules["inner.L_level"]["relative"])  # residual i: call i vs call i-1
        after = [i for i in range(1, len(l_res) + 1) if i % l_cycles == 0]  # first L call after an H update
        ratios = [l_res[i - 1] / l_res[i - 2] for i in after if i >= 2 and l_res[i - 2] > 0]
        out["l_reset"] = float(np.mean(ratios)) if ratios else None
    return out


def saved_bytes(adapter: HRMAdapter) -> int:
    """Bytes autograd saves for one training-mode loss on one batch of 16 test puzzles."""
    model = adapter.model.train()
    head = ACTLossHead(model)
    batch = adapter.batch(list(range(min(16, adapter.num_examples))))
    with count_saved_bytes() as saved:
        head(head.initial_carry(batch), batch)
    model.eval()
    return saved.total


def eval_curve(metrics_path: Path) -> list[dict]:
    """Held-out exact / token accuracy at every evaluation of a run (its ``metrics.jsonl``)."""
    curve = []
    for line in metrics_path.read_text().splitlines():
        record = json.loads(line)
        if "eval/exact_accuracy" in record:
            curve.append(
                {"step": record["step"], "exact": record["eval/exact_accuracy"], "token": record["eval/accuracy"]}
            )
    return curve


def plot_curves(result: dict, path: Path) -> Path:
    """Held-out exact accuracy vs training step, one line per variant."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6, 3.6))
    for name, row in result["variants"].items():
        curve = row.get("eval_curve") or []
        axis.plot([p["step"] for p in curve], [p["exact"] for p in curve], marker="o", label=name)
    axis.set(xlabel="training step", ylabel="held-out exact accuracy", title=f"Study: {result['study']['name']}")
    axis.set_ylim(0, 1)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return save_figure(figure, path)


def measure_variant(run_dir: Path, puzzles: int, noise_stds: list[float] = ()) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())
    adapter = HRMAdapter.from_checkpoint(run_dir, device="cpu")
    indices = list(range(min(puzzles, adapter.num_examples)))
    trajectories = dynamics.collect_trajectories(adapter, indices)
    row = {
        "parameters": summary["parameters"],
        "train_seconds": summary["train_seconds"],
        "exact": summary["eval/exact_accuracy"],
        "token": summary["eval/accuracy"],
        "saved_mib": round(saved_bytes(adapter) / 2**20, 2),
    }
    try:
        dims = dynamics.dimensionality(trajectories, adapter.model, bootstrap=0)
        row.update(PR_H=dims["PR_H"], PR_L=dims["PR_L"], PR_ratio=dims["ratio"])
    except InterpError as err:  # a model without a z_L (the transformer baseline) has no ratio
        row["PR_note"] = str(err)
    convergence = dynamics.convergence(trajectories, adapter.model)
    row.update(convergence_summary(convergence, adapter.model.config.L_cycles))
    row["changed"] = dynamics.changed_cell_accuracy(trajectories)
    row["eval_curve"] = eval_curve(run_dir / "metrics.jsonl")
    row.update(dynamics.state_sparsity(trajectories, adapter.model))
    if (run_dir / "init.json").is_file():
        row["init_parameters"] = json.loads((run_dir / "init.json").read_text())["parameters_copied"]
    stds = sorted({0.0, *noise_stds}) if noise_stds else []  # std 0: the same puzzles without noise
    for noisy in dynamics.noise_robustness(adapter, indices, stds):
        row[f"exact@noise{noisy['std']:g}"] = noisy["exact"]
    return row


def check_reusable(run_dir: Path, wanted) -> None:
    """A finished variant is reused only if it was trained with the config the study asks for now."""
    saved = read_yaml(run_dir / "config.yaml")["train"]
    volatile = {"run_dir", "progress", "resume", "overwrite"}
    fields = type(wanted).model_fields
    for key, value in wanted.model_dump().items():
        # a field the run's version did not have yet was at its default
        before = saved.get(key, fields[key].get_default(call_default_factory=True))
        if key not in volatile and before != value:
            raise InterpError(
                f"{run_dir} was trained with {key}={before!r}, the study now asks for {value!r}; "
                "pass --retrain or another --out"
            )


def run_study(config: StudyConfig, out_dir: str | Path, retrain: bool = False, log=print) -> dict:
    out_dir = Path(out_dir)
    rows = {}
    for name, overrides in config.variants.items():
        run_dir = out_dir / name
        train_config = load_train_config(
            config.base, [*config.overrides, *overrides], run_dir=str(run_dir), progress=False
        )
        if not retrain and (run_dir / "summary.json").exists():
            check_reusable(run_dir, train_config)
        else:
            started = time.perf_counter()
            train(train_config, log=lambda *_: None)
            log(f"  trained {name} in {time.perf_counter() - started:.0f} s")
        rows[name] = {"overrides": overrides, **measure_variant(run_dir, config.puzzles, config.noise_stds)}
        log(f"  {name}: exact {rows[name]['exact']:.3f}")
    result = {"study": config.model_dump(), "variants": rows}
    write_json(out_dir / "study.json", result)
    plot_curves(result, out_dir / "curves.png")
    write_markdown(result, out_dir / "study.md")
    return result


COLUMNS = (
    "parameters",
    "train_seconds",
    "exact",
    "token",
    "changed",
    "saved_mib",
    "PR_H",
    "PR_L",
    "PR_ratio",
    "h_decay",
    "l_reset",
    "hoyer_H",
    "hoyer_L",
    "init_parameters",
)


def write_markdown(result: dict, path: Path) -> Path:
    def cell(value) -> str:
        if value is None:
            return "–"
        if isinstance(value, float):
            return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
        return str(value)

    rows = result["variants"].values()
    extra = sorted({key for row in rows for key in row if key.startswith("exact@")}, key=lambda k: float(k[11:]))
    columns = [c for c in (*COLUMNS, *extra) if any(row.get(c) is not None for row in rows)]  # only measured ones
    lines = [f"# Study: {result['study']['name']}", "", "| variant | " + " | ".join(columns) + " |"]
    lines.append("|---" * (len(columns) + 1) + "|")
    for name, row in result["variants"].items():
        lines.append(f"| {name} | " + " | ".join(cell(row.get(c)) for c in columns) + " |")
    steps = sorted({p["step"] for row in rows for p in row.get("eval_curve") or []})
    if len(steps) > 1:  # learning curves: what a transfer study is about
        lines += ["", "Held-out exact accuracy at each evaluation (curves.png):", ""]
        lines.append("| variant | " + " | ".join(f"step {s}" for s in steps) + " |")
        lines.append("|---" * (len(steps) + 1) + "|")
        for name, row in result["variants"].items():
            at = {p["step"]: p["exact"] for p in row.get("eval_curve") or []}
            lines.append(f"| {name} | " + " | ".join(cell(at.get(s)) for s in steps) + " |")
    with atomic_write(path) as handle:
        handle.write("\n".join(lines) + "\n")
    return path
