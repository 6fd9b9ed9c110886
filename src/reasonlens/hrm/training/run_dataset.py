"""Which dataset a run was trained on, wherever the run, the dataset and the user are now.

At training time a run records its dataset in ``config.yaml`` under ``data_location``: the path as typed
(``train.data_path``), its absolute form, and the path from the run directory to it. A command that takes
a run (``evaluate``, ``patch``, ``patch-batch``, the seed-000 scripts, ``analyze``, ``hrm convert``) finds
the dataset by trying, in order:

1. ``--data DIR`` when the user gives it;
2. the path from the run directory — the run and its dataset were moved or copied together;
3. the absolute path — the dataset stayed where it was;
4. the typed path from the folder training ran in (for runs made before ``data_location`` existed: that
   folder is the run's absolute path less its typed ``run_dir``);
5. the typed path from the current folder, then from the run's folder (official checkpoints'
   ``all_config.yaml`` ``data_path``).

The first candidate with a ``train/`` or ``test/`` ``dataset.json`` wins; when none has one, the error names
every place tried and the ``--data`` flag.
"""

from __future__ import annotations

import os
from pathlib import Path

from reasonlens.hrm.data.format import DatasetError
from reasonlens.hrm.training.checkpoint import CONFIG_FILE, OFFICIAL_CONFIG_FILE, CheckpointError
from reasonlens.utils.io import read_yaml

LOCATION_KEY = "data_location"


def location_record(data_path: str | os.PathLike, run_dir: str | os.PathLike) -> dict[str, str]:
    """What a run stores about its dataset so that it can be found after either of them moves."""
    dataset, run = Path(data_path).resolve(), Path(run_dir).resolve()
    return {"typed": str(data_path), "absolute": str(dataset), "from_run": os.path.relpath(dataset, run)}


def run_folder(checkpoint: str | os.PathLike) -> Path:
    """The folder of a run: the path itself, or the folder of a weights file."""
    checkpoint = Path(checkpoint)
    return checkpoint if checkpoint.is_dir() else checkpoint.parent


def candidate_paths(checkpoint: str | os.PathLike) -> list[Path]:
    """Where the dataset of a run may be, in the order of the module docstring (without ``--data``)."""
    folder = run_folder(checkpoint)
    if (folder / CONFIG_FILE).is_file():
        saved = read_yaml(folder / CONFIG_FILE) or {}
        train, location = saved.get("train") or {}, saved.get(LOCATION_KEY) or {}
        typed = location.get("typed") or train.get("data_path")
        candidates = []
        if location.get("from_run"):
            candidates.append(folder / location["from_run"])
        if location.get("absolute"):
            candidates.append(Path(location["absolute"]))
        typed_run_dir = train.get("run_dir")
        if typed and typed_run_dir and not Path(typed_run_dir).is_absolute():
            parts = Path(typed_run_dir).parts
            absolute = folder.resolve()
            if absolute.parts[-len(parts) :] == parts:
                candidates.append(Path(*absolute.parts[: -len(parts)]) / typed)
    elif (folder / OFFICIAL_CONFIG_FILE).is_file():
        typed = (read_yaml(folder / OFFICIAL_CONFIG_FILE) or {}).get("data_path")
        candidates = []
    else:
        return []
    if typed:
        candidates += [Path(typed), folder / typed]
    unique: list[Path] = []
    for path in candidates:
        if path not in unique:
            unique.append(path)
    return unique


def is_dataset(path: Path) -> bool:
    return any((path / split / "dataset.json").is_file() for split in ("train", "test"))


def dataset_of_run(checkpoint: str | os.PathLike, data: str | os.PathLike | None = None) -> Path:
    """The dataset folder to use with a run: ``data`` when given, else the first recorded place that holds
    one (module docstring). Raises :class:`DatasetError` naming every place tried and ``--data``."""
    if not Path(checkpoint).exists():
        raise CheckpointError(
            f"checkpoint not found: {checkpoint} (a run directory, its model.safetensors, or an official checkpoint)"
        )
    if data is not None:
        if not is_dataset(Path(data)):
            raise DatasetError(f"--data {data}: no train/dataset.json or test/dataset.json there")
        return Path(data)
    tried = candidate_paths(checkpoint)
    for path in tried:
        if is_dataset(path):
            return path
    if not tried:
        raise DatasetError(f"no dataset recorded for {checkpoint}; pass the dataset folder with --data DIR")
    places = ", ".join(str(p) for p in tried)
    raise DatasetError(
        f"the dataset {checkpoint} was trained on was not found; tried {places}; "
        "pass the dataset folder with --data DIR"
    )
