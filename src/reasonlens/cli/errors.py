"""The one place where bad input becomes one clear line on stderr and exit code 2 (no traceback).

What counts as the user's to fix, and how each is said:

- every input error of the library (:class:`reasonlens.utils.errors.UserInputError`: configs, datasets,
  checkpoints, runs, devices, specs, agents, lm inputs, output folders) — its own message;
- a config that pydantic rejects where a library call built it directly — the field and what is allowed;
- a YAML file that does not parse — the file, line and problem;
- a weights file that safetensors cannot read (truncated, empty, not safetensors);
- the file system saying no: a missing file, a folder that exists, a file where a folder should be (or the
  reverse), no permission, a read-only or full disk — the path and the reason.

A message is always one line (a multi-line report is joined with "; "). Typer commands wrap their call in
:func:`user_errors`; the argparse scripts of the seeds return :func:`exit_code` of theirs. A command of a
family whose extra is not installed says which extra to install (:func:`needs_extra`)."""

from __future__ import annotations

import contextlib
import errno
import sys
from collections.abc import Callable, Iterator

import typer
import yaml
from pydantic import ValidationError
from safetensors import SafetensorError

from reasonlens.utils.config import format_validation_error
from reasonlens.utils.errors import UserInputError

FILE_SYSTEM_ERRNOS = {errno.ENOENT, errno.EEXIST, errno.EISDIR, errno.ENOTDIR, errno.EACCES, errno.EPERM,
                      errno.EROFS, errno.ENOSPC, errno.ENAMETOOLONG}  # fmt: skip
USER_ERRORS = (UserInputError, ValidationError, yaml.YAMLError, SafetensorError, OSError)
FILE_SYSTEM_ERRORS = (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError)


def one_line(err: BaseException) -> str | None:
    """The one-line message for an error that is the user's to fix; None for anything else (a bug)."""
    if isinstance(err, UserInputError):
        text = str(err)
    elif isinstance(err, ValidationError):
        text = format_validation_error(err.title, err, [])
    elif isinstance(err, yaml.YAMLError):
        mark = getattr(err, "problem_mark", None)
        where = f"{mark.name}, line {mark.line + 1}" if mark is not None else "a YAML file"
        text = f"{where}: not valid YAML ({getattr(err, 'problem', None) or err})"
    elif isinstance(err, SafetensorError):
        text = f"could not read a weights file as safetensors (truncated, empty or another format): {err}"
    elif isinstance(err, FILE_SYSTEM_ERRORS) or (isinstance(err, OSError) and err.errno in FILE_SYSTEM_ERRNOS):
        path = f"{err.filename}: " if err.filename else ""
        text = f"{path}{err.strerror or err}"
    else:
        return None
    first, *rest = [part.strip() for part in str(text).splitlines() if part.strip()] or [type(err).__name__]
    return first + (" " if first.endswith(":") else "; ") + "; ".join(rest) if rest else first


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Inside a typer command: an input error prints ``error: <message>`` and exits with code 2."""
    try:
        yield
    except USER_ERRORS as err:
        message = one_line(err)
        if message is None:
            raise
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(2) from None


def exit_code(function: Callable[[], object]) -> int:
    """For the argparse scripts: run ``function``; 0 on success, 2 (after one line on stderr) on an input error."""
    try:
        function()
    except USER_ERRORS as err:
        message = one_line(err)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2
    return 0


@contextlib.contextmanager
def needs_extra(extra: str) -> Iterator[None]:
    """Imports of an optional family inside this block fail with the pip command that installs them."""
    try:
        yield
    except ImportError as err:
        typer.echo(f"error: this command needs the [{extra}] extra ({err}); pip install -e '.[{extra}]'", err=True)
        raise typer.Exit(2) from None
