"""The one place where bad input becomes one clear line on stderr and exit code 2 (no traceback).

Every input error of the library derives from :class:`reasonlens.utils.errors.UserInputError`; a missing
file or a folder that already exists is the user's to fix too. Typer commands wrap their call in
:func:`user_errors`; the argparse scripts of the seeds return :func:`exit_code` of theirs. A command of a
family whose extra is not installed says which extra to install (:func:`needs_extra`)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

import typer

from reasonlens.utils.errors import UserInputError

USER_ERRORS = (UserInputError, FileNotFoundError, FileExistsError)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Inside a typer command: an input error prints ``error: <message>`` and exits with code 2."""
    try:
        yield
    except USER_ERRORS as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None


def exit_code(function: Callable[[], object]) -> int:
    """For the argparse scripts: run ``function``; 0 on success, 2 (after one line on stderr) on an input error."""
    try:
        function()
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
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
