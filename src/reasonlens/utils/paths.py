"""Where reasonlens finds the datasets and recipes it ships: ``$REASONLENS_DATA`` if set, else the ``data/``
and `configs/` folders of the source checkout (``pip install -e .`` keeps it next to ``src/``)."""

from __future__ import annotations

import os
from pathlib import Path


def data_root() -> Path:
    env = os.environ.get("REASONLENS_DATA")
    root = Path(env) if env else Path(__file__).resolve().parents[3] / "data"
    if not root.is_dir():
        raise FileNotFoundError(
            f"reasonlens data folder not found at {root}; set REASONLENS_DATA to the folder holding "
            "sudoku/, arc1/, arc2/, conceptarc/ (the repository's data/ folder)"
        )
    return root


def config_root() -> Path:
    """The repository's ``configs/`` folder (recipes such as the demo's); ``$REASONLENS_CONFIGS`` if set."""
    env = os.environ.get("REASONLENS_CONFIGS")
    root = Path(env) if env else Path(__file__).resolve().parents[3] / "configs"
    if not root.is_dir():
        raise FileNotFoundError(
            f"reasonlens configs folder not found at {root}; set REASONLENS_CONFIGS to the repository's configs/"
        )
    return root
