"""Turn the library's input errors into one clear line on stderr and exit code 2 (no traceback)."""

from __future__ import annotations

import contextlib

import typer


@contextlib.contextmanager
def friendly_errors():
    from reasonlens.hrm.checkpoint import CheckpointError
    from reasonlens.hrm.config import ConfigError
    from reasonlens.hrm.data.format import DatasetError
    from reasonlens.hrm.train import TrainError

    try:
        yield
    except (ConfigError, CheckpointError, DatasetError, TrainError, FileNotFoundError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
