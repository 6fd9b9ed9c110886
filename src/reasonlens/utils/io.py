"""Atomic file writes and the small set of formats reasonlens writes (YAML, JSON, JSONL, safetensors).

Every writer here goes through :func:`atomic_write`: the bytes land in a temporary file in the
destination folder and are renamed into place, so a killed process never leaves a half-written file.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from reasonlens.utils.errors import UserInputError


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file next to ``path``; on clean exit fsync and rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


OWNER_FILE = ".reasonlens-owned"  # written into every folder reasonlens makes whole (datasets, models, SAEs)


class FolderError(UserInputError):
    """An output folder cannot be written or replaced as asked."""


class FileFormatError(UserInputError):
    """A file that does not hold what its name says (YAML that does not parse, ...)."""


def mark_owned(folder: str | os.PathLike, kind: str) -> None:
    """Record that reasonlens made ``folder`` (a ``kind``: "sudoku dataset", "training run", ...), so that a
    later command may replace it — and only such a folder."""
    with atomic_write(Path(folder) / OWNER_FILE) as handle:
        json.dump({"made_by": "reasonlens", "kind": kind}, handle)


def is_owned(folder: str | os.PathLike) -> bool:
    return (Path(folder) / OWNER_FILE).is_file()


def check_replaceable(path: str | os.PathLike) -> None:
    """Raise :class:`FolderError` unless ``path`` may be replaced by a folder we write: it does not exist,
    or it is an empty folder, or a folder reasonlens made (``OWNER_FILE``) that is not the current folder
    or one above it. Foreign files are never deleted, whatever flag was passed."""
    path = Path(path)
    if not path.exists():
        return
    if not path.is_dir():
        raise FolderError(f"{path} is a file, not a folder; choose another output folder")
    here = Path.cwd().resolve()
    if path.resolve() in (here, *here.parents):
        raise FolderError(f"{path} is the current folder or one above it; choose a new output folder")
    if any(path.iterdir()) and not is_owned(path):
        raise FolderError(
            f"{path} holds files that reasonlens did not write (no {OWNER_FILE} in it); refusing to replace it: "
            "choose another output folder, or empty this one"
        )


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, kind: str) -> Iterator[Path]:
    """Yield a temporary sibling directory to fill; on success it is marked as ours (``kind``) and replaces
    ``path`` — which must pass :func:`check_replaceable` — and on error it is deleted, so readers never see
    a half-written directory and no foreign folder is ever removed."""
    path = Path(path)
    check_replaceable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it owner-only; an output folder should not be
    try:
        yield tmp
        mark_owned(tmp, kind)
        if path.exists():
            old = tmp.with_suffix(".old")
            os.replace(path, old)  # checked above: empty or ours
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_yaml(path: str | os.PathLike, data: Any) -> None:
    with atomic_write(path) as handle:
        yaml.safe_dump(data, handle, sort_keys=False)


def read_yaml(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"YAML file not found: {path}")
    with open(path) as handle:
        try:
            return yaml.safe_load(handle)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" (line {mark.line + 1}: {getattr(err, 'problem', '')})" if mark is not None else ""
            raise FileFormatError(f"{path} is not valid YAML{where}") from None


def finite_or_null(data: Any) -> Any:
    """``data`` with every NaN / inf float replaced by None, so that it is valid JSON (``null``)."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: finite_or_null(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [finite_or_null(value) for value in data]
    return data


def write_json(path: str | os.PathLike, data: Any, indent: int = 2) -> None:
    """Valid JSON always: non-finite numbers are written as ``null`` (json.dump would write bare NaN)."""
    with atomic_write(path) as handle:
        json.dump(finite_or_null(data), handle, indent=indent, allow_nan=False)
        handle.write("\n")


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one JSON line. A line is written with a single ``write`` call, so readers never
    see half a record even if the process dies mid-run."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")


def save_safetensors(path: str | os.PathLike, tensors: dict, metadata: dict[str, str] | None = None) -> None:
    """Save a flat dict of tensors atomically (contiguous copies; safetensors rejects views)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def load_safetensors(path: str | os.PathLike, device: str = "cpu") -> dict:
    try:
        return load_file(str(path), device=device)
    except SafetensorError as err:  # truncated, empty, or not safetensors at all
        raise FileFormatError(f"{path} is not a readable safetensors file ({err})") from None


def torch_save_atomic(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` through a temporary file and rename."""
    with atomic_write(path, "wb") as handle:
        torch.save(obj, handle)
