"""A trained run as a self-contained model folder in the Hugging Face Hub layout (``zoo/`` and ``push_to_hub``).

The folder holds what loading and solving need and nothing that needs the dataset on disk:

- ``model.safetensors`` and ``config.yaml`` (our checkpoint: ``arch``, ``model`` — whose ``seq_len``,
  ``vocab_size`` and ``num_puzzle_identifiers`` are the tokenisation — and the run's ``train`` section, kept
  as the record of how it was made), ``config.json`` (the same, for the Hub);
- ``dataset.json``: the training split's metadata (tokens, sequence length, identifiers) and, when the
  dataset recorded one, ``build.json`` as ``dataset_build.json`` (what the puzzles were);
- the run's ``summary.json``, its evaluation records from ``metrics.jsonl`` as ``eval_curve.jsonl`` (the
  per-step training records stay behind: they are most of a run's size), any ``evaluation*.json`` beside it,
  and the files passed as ``include`` (e.g. example puzzles);
- ``README.md``: the model card (given, or a stub naming the run; Hub front matter added when missing).

``load_checkpoint(folder)``, ``ACTModel.from_pretrained(folder)`` and every ``reasonlens`` command that takes
a run accept the folder; ``ACTModel.from_pretrained("owner/name")`` downloads a published one (the only
place that contacts the Hub), and :func:`push_folder` publishes one.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from reasonlens.hrm.training.checkpoint import CONFIG_FILE, MODEL_FILE, CheckpointError
from reasonlens.hrm.training.run_dataset import LOCATION_KEY, dataset_of_run
from reasonlens.utils.io import OWNER_FILE, atomic_directory, read_yaml, write_json, write_yaml

MODEL_FOLDER_KIND = "model folder"
FRONT_MATTER = "---\nlibrary_name: reasonlens\ntags:\n- reasoning\n- hrm\n- act\n---\n\n"
EVAL_CURVE_FILE = "eval_curve.jsonl"


def publish_run(
    run_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    card: str | None = None,
    data: str | os.PathLike | None = None,
    include: list[str | os.PathLike] = (),
) -> Path:
    """Write the model folder of ``run_dir`` to ``out_dir`` (atomically; an existing ``out_dir`` must be
    empty or a model folder of ours). ``card``: the model card's text; ``data``: the dataset folder when it
    is not where the run recorded it; ``include``: more files to copy in."""
    run_dir = Path(run_dir)
    if not (run_dir / MODEL_FILE).is_file() or not (run_dir / CONFIG_FILE).is_file():
        raise CheckpointError(f"{run_dir} is not a trained run ({MODEL_FILE} and {CONFIG_FILE} expected)")
    dataset = dataset_of_run(run_dir, data)
    for path in map(Path, include):
        if not path.is_file():
            raise CheckpointError(f"--include {path}: no such file")
    config = read_yaml(run_dir / CONFIG_FILE)
    config.pop(LOCATION_KEY, None)  # where the dataset was on the training machine means nothing elsewhere
    with atomic_directory(out_dir, MODEL_FOLDER_KIND) as folder:
        shutil.copyfile(run_dir / MODEL_FILE, folder / MODEL_FILE)
        write_yaml(folder / CONFIG_FILE, config)
        write_json(folder / "config.json", config)
        split = "train" if (dataset / "train" / "dataset.json").is_file() else "test"
        shutil.copyfile(dataset / split / "dataset.json", folder / "dataset.json")
        if (dataset / "build.json").is_file():
            shutil.copyfile(dataset / "build.json", folder / "dataset_build.json")
        if (run_dir / "summary.json").is_file():
            shutil.copyfile(run_dir / "summary.json", folder / "summary.json")
        if (run_dir / "metrics.jsonl").is_file():
            lines = (run_dir / "metrics.jsonl").read_text().splitlines(keepends=True)
            (folder / EVAL_CURVE_FILE).write_text("".join(line for line in lines if '"eval/' in line))
        for path in map(Path, include):
            shutil.copyfile(path, folder / path.name)
        for path in sorted(run_dir.glob("evaluation*.json")):
            shutil.copyfile(path, folder / path.name)
        text = card if card is not None else f"# {Path(out_dir).name}\n\nTrained with reasonlens from `{run_dir}`.\n"
        if not text.startswith("---"):
            text = FRONT_MATTER + text
        (folder / "README.md").write_text(text)
    return Path(out_dir)


def push_folder(folder: str | os.PathLike, repo_id: str, private: bool = False) -> str:
    """Upload a model folder to the Hugging Face Hub (needs a login: ``hf auth login``); returns its URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True)
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, ignore_patterns=[OWNER_FILE])
    return f"https://huggingface.co/{repo_id}"
