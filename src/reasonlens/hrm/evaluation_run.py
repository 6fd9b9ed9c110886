"""Evaluate a checkpoint (ours or official) on a dataset's test split and write the results: what
``reasonlens evaluate`` runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reasonlens.hrm.checkpoint import CONFIG_FILE, OFFICIAL_CONFIG_FILE, CheckpointError, load_checkpoint
from reasonlens.hrm.data.format import DatasetError
from reasonlens.hrm.data.sampler import PuzzleBatches
from reasonlens.hrm.evaluate import DEFAULT_SAVE_OUTPUTS, evaluate_model
from reasonlens.utils.device import resolve_device
from reasonlens.utils.io import atomic_write, read_yaml, write_json


def trained_data_path(checkpoint: Path) -> str | None:
    """The dataset a run (ours: config.yaml ``train.data_path``; official: all_config.yaml) was trained on."""
    folder = checkpoint if checkpoint.is_dir() else checkpoint.parent
    if (folder / CONFIG_FILE).is_file():
        return ((read_yaml(folder / CONFIG_FILE) or {}).get("train") or {}).get("data_path")
    if (folder / OFFICIAL_CONFIG_FILE).is_file():
        return (read_yaml(folder / OFFICIAL_CONFIG_FILE) or {}).get("data_path")
    return None


def run_evaluation(
    checkpoint, data=None, max_steps=None, batch_size=256, device="auto", out=None, save_predictions=False
) -> dict:
    checkpoint = Path(checkpoint)
    data = data or trained_data_path(checkpoint)
    if data is None:
        raise CheckpointError(f"no dataset recorded for {checkpoint}; pass --data DIR")
    device = resolve_device(device)
    batches = PuzzleBatches(data, "test", batch_size)
    meta = batches.metadata
    model = load_checkpoint(checkpoint, device=device, seq_len=meta.seq_len, data_path=data)
    for field in ("seq_len", "vocab_size"):
        if getattr(model.config, field) != getattr(meta, field):
            raise DatasetError(
                f"{data} has {field}={getattr(meta, field)} but the model was built for "
                f"{field}={getattr(model.config, field)}: evaluate on the dataset it was trained on"
            )
    if meta.num_puzzle_identifiers > model.config.num_puzzle_identifiers:
        raise DatasetError(
            f"{data} uses {meta.num_puzzle_identifiers} puzzle ids; the model knows "
            f"{model.config.num_puzzle_identifiers}"
        )
    is_arc = (Path(data) / "test_puzzles.json").is_file()
    save = list(DEFAULT_SAVE_OUTPUTS) if (is_arc or save_predictions) else []
    metrics, outputs = evaluate_model(
        model, batches.test_batches(), device=device, max_steps=max_steps, save_outputs=save
    )
    out = Path(out) if out else (checkpoint if checkpoint.is_dir() else checkpoint.parent) / "evaluation.json"
    result = {
        "checkpoint": str(checkpoint),
        "data": str(data),
        "segments": max_steps or model.config.halt_max_steps,
        "trained_segments": model.config.halt_max_steps,
        "metrics": metrics,
        "out": str(out),
    }
    if is_arc:
        from reasonlens.hrm.arc_eval import evaluate_arc_predictions, write_submission

        result["arc"] = evaluate_arc_predictions(data, outputs)
        result["submission"] = str(write_submission(out.with_suffix(".submission.json"), result["arc"]))
    if save_predictions:
        with atomic_write(out.with_suffix(".predictions.npz"), "wb") as handle:
            np.savez_compressed(handle, **outputs)
        result["predictions"] = str(out.with_suffix(".predictions.npz"))
    write_json(out, result)
    return result
