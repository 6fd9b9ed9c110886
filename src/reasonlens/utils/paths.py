"""Where reasonlens finds the datasets and recipes it ships: the ``data/`` and ``configs/`` folders of the
source checkout (``pip install -e .`` keeps them next to ``src/``), or the folders named by
``$REASONLENS_DATA`` / ``$REASONLENS_CONFIGS``."""

from __future__ import annotations

import os
from pathlib import Path

from reasonlens.utils.errors import UserInputError

CHECKOUT = Path(__file__).resolve().parents[3]


class FileNameError(UserInputError):
    """A name from a config or a flag that would become a path outside its output folder."""


def _shipped_folder(name: str, variable: str, holds: str) -> Path:
    root = Path(os.environ[variable]) if os.environ.get(variable) else CHECKOUT / name
    if not root.is_dir():
        raise FileNotFoundError(
            f"reasonlens {name} folder not found at {root}; set {variable} to the folder holding {holds} "
            f"(the repository's {name}/ folder)"
        )
    return root


def data_root() -> Path:
    """The shipped datasets (Sudoku banks, ARC, ConceptARC)."""
    return _shipped_folder("data", "REASONLENS_DATA", "sudoku/, arc1/, arc2/, conceptarc/")


def config_root() -> Path:
    """The recipes (``configs/train/*.yaml``, such as the demo's)."""
    return _shipped_folder("configs", "REASONLENS_CONFIGS", "train/, studies/")


def check_file_name(name: str, what: str) -> str:
    """``name`` as a single file or folder name inside an output folder: no path separators, not ``.``
    or ``..``, not empty — so that a name from a config or a flag never writes outside its folder."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise FileNameError(
            f"{what} {name!r} cannot be a file name: use letters, digits, '-', '_' or '.' (no '/' or '..')"
        )
    return name
