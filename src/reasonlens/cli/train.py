"""``reasonlens train``: build the training config from a YAML file (or a run to resume) and ``key=value``
overrides, and train."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from reasonlens.cli.errors import user_errors
from reasonlens.hrm.training.trainer import load_train_config
from reasonlens.hrm.training.trainer import train as run_training


def train(
    config: Annotated[Path, typer.Argument(help="training config YAML (configs/*.yaml), or a run directory to resume")],
    overrides: Annotated[
        list[str] | None, typer.Argument(help="key=value overrides, e.g. lr=3e-4 model.H_cycles=4")
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="continue the run in run_dir from its last checkpoint (none yet: start it afresh)")
    ] = False,
) -> None:
    """Train an HRM-family model (torchrun-aware: launch with torchrun for several processes). A run directory
    resumes from its last checkpoint, or starts afresh when it was stopped before its first one;
    ``overwrite=true`` reuses only a training run's folder."""
    with user_errors():
        train_config = load_train_config(config, overrides or [], **({"resume": True} if resume else {}))
        summary = run_training(train_config, log=typer.echo)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun only rank 0 reports
        typer.echo(json.dumps(summary, indent=2))
