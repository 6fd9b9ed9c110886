"""``reasonlens data {sudoku,maze,arc,arc-synthetic} OUT --field value ...``: build a puzzle dataset in the
official format.

Each command is derived from its build config, a pydantic model of :mod:`reasonlens.hrm.data`: a field is
declared once, there, with its default and the description that ``--help`` shows. The required field
``out_dir`` is the argument ``OUT``; every other field is the option ``--field-name`` (a bool one the flag pair
``--name/--no-name``; one that takes a list, comma-separated values). Values reach the model as given, so the
model's validation is the only check and a bad value stops with a message naming the field (exit code 2).
"""

from __future__ import annotations

import inspect
import json
import types
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import typer
from pydantic.fields import FieldInfo

from reasonlens.cli.errors import user_errors
from reasonlens.hrm.data.arc import ARCBuildConfig, build_arc_dataset
from reasonlens.hrm.data.arc_synthetic import SyntheticARCConfig, build_synthetic_arc_dataset
from reasonlens.hrm.data.maze import MazeBuildConfig, build_maze_dataset
from reasonlens.hrm.data.sudoku import SudokuBuildConfig, build_sudoku_dataset
from reasonlens.utils.config import StrictConfig

app = typer.Typer(help="Build puzzle datasets (official HRM on-disk format).", no_args_is_help=True)

ARGUMENTS = {"out_dir": "out"}  # fields given as positional arguments, with the name --help shows
SCALAR_METAVARS = {int: "<int>", float: "<float>", str: "<str>", Path: "<path>"}  # typer's own spelling


def _report(out: Path) -> None:
    info = json.loads((out / "build.json").read_text()) if (out / "build.json").is_file() else {}
    typer.echo(f"wrote {out}")
    for split, counts in (info.get("splits") or info.get("counts") or {}).items():
        if isinstance(counts, dict):
            shown = ", ".join(f"{k} {v}" for k, v in counts.items() if isinstance(v, int | float))
            typer.echo(f"  {split}: {shown}")


# ----------------------------------------------------------------------------------------------------------
# options from the fields of a build config


def _members(annotation: Any) -> list[Any]:
    """The types a field admits: the members of a union, None left out."""
    if get_origin(annotation) in (Union, types.UnionType):
        return [member for member in get_args(annotation) if member is not type(None)]
    return [annotation]


def _is_word(annotation: Any) -> bool:
    return annotation is str or get_origin(annotation) is Literal


def _list_item(annotation: Any) -> Any | None:
    """``X`` when the field admits ``list[X]`` of words (str or a Literal), which the CLI takes comma-separated."""
    for member in _members(annotation):
        if get_origin(member) is list and _is_word(get_args(member)[0]):
            return get_args(member)[0]
    return None


def _metavar(annotation: Any) -> str:
    """How ``--help`` shows a value: the type (<int>, <path>, ...), the choices of a Literal ([a|b]), ``,...``
    for a list; members a command line cannot spell (a list of pairs) are left out."""
    item = _list_item(annotation)
    words = []
    for member in _members(annotation):
        if get_origin(member) is Literal:
            words.append("[" + "|".join(str(choice) for choice in get_args(member)) + "]")
        elif member in SCALAR_METAVARS:
            words.append(SCALAR_METAVARS[member])
    if item is None:
        return " | ".join(words) or "<str>"
    if get_origin(item) is Literal:
        return "<name>,..."
    return f"{words[0]}[,...]" if words else f"{SCALAR_METAVARS[item]},..."


def _help(field: FieldInfo) -> str:
    text = field.description or ""
    item = _list_item(field.annotation)
    if item is not None and get_origin(item) is Literal:
        text += f" (comma-separated; of: {', '.join(map(str, get_args(item)))})"
    return text


def _shown_default(field: FieldInfo) -> str | None:
    """The model's default as the command line spells it (None: no default to show)."""
    default = field.get_default(call_default_factory=True)
    if default is None:
        return None
    if not isinstance(default, list):
        return str(default)
    item = _list_item(field.annotation)
    if item is not None and get_origin(item) is Literal and tuple(default) == get_args(item):
        return "all"
    return ",".join(map(str, default))


def _parameter(name: str, field: FieldInfo) -> inspect.Parameter:
    """The typer parameter of one field. Values other than bool flags stay text, so that pydantic, not click,
    converts and checks them. The default is the model's, spelt for the command line: the command does not pass
    it on, so the model applies its own."""
    keyword = inspect.Parameter.KEYWORD_ONLY
    if name in ARGUMENTS:
        info = typer.Argument(metavar=ARGUMENTS[name], help=field.description, show_default=False)
        return inspect.Parameter(name, keyword, annotation=Annotated[field.annotation, info])
    if field.annotation is bool:
        info = typer.Option(help=field.description)
        return inspect.Parameter(name, keyword, default=field.default, annotation=Annotated[bool, info])
    info = typer.Option(metavar=_metavar(field.annotation), help=_help(field))
    return inspect.Parameter(name, keyword, default=_shown_default(field), annotation=Annotated[str | None, info])


def _value(field: FieldInfo, text: str) -> Any:
    """A list field's comma-separated items (one item stays a word where the field also admits one)."""
    item = _list_item(field.annotation)
    if item is None:
        return text
    parts = [part.strip() for part in text.split(",") if part.strip()]
    takes_word = any(_is_word(member) for member in _members(field.annotation))
    return parts[0] if takes_word and len(parts) == 1 else parts


def data_command(name: str, model: type[StrictConfig], build: Callable[[Any], Path], help: str) -> None:
    """Register ``reasonlens data NAME``: its parameters are the fields of ``model``, in their order; it
    validates them with ``model`` and calls ``build`` on the config."""
    fields = model.model_fields

    parameters = [_parameter(field_name, field) for field_name, field in fields.items()]
    shown_defaults = {parameter.name: parameter.default for parameter in parameters}

    def command(**values: Any) -> None:
        given = {  # a value left at (or set to) its shown default is the model's default: leave it to the model
            key: _value(fields[key], value) if isinstance(value, str) and key not in ARGUMENTS else value
            for key, value in values.items()
            if value is not None and value != shown_defaults[key]
        }
        with user_errors():
            built = build(model.from_dict(given))
        _report(built)

    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
    command.__name__ = command.__qualname__ = name.replace("-", "_")
    command.__doc__ = help
    app.command(name)(command)


data_command(
    "sudoku",
    SudokuBuildConfig,
    build_sudoku_dataset,
    "Sudoku: generated 4×4 / 6×6 / 9×9 puzzles with unique solutions, the real banks, or your own file.",
)
data_command(
    "maze",
    MazeBuildConfig,
    build_maze_dataset,
    "Maze: Lehnert-style random mazes with BFS-optimal paths (Maze-Hard: 30×30, path > 110), or the official CSVs.",
)
data_command(
    "arc",
    ARCBuildConfig,
    build_arc_dataset,
    "ARC-AGI-1 / ARC-AGI-2 from the shipped task folders (evaluation demos in train, their tests in test).",
)
data_command(
    "arc-synthetic",
    SyntheticARCConfig,
    build_synthetic_arc_dataset,
    "Simplified synthetic ARC (pattern-completion task families, seed 003) for CPU-sized work.",
)
