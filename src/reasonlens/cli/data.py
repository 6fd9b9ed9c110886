"""``reasonlens data {sudoku,maze,arc,arc-synthetic} OUT ...``: build a puzzle dataset in the official format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from reasonlens.cli.errors import friendly_errors

app = typer.Typer(help="Build puzzle datasets (official HRM on-disk format).", no_args_is_help=True)

Out = Annotated[Path, typer.Argument(help="output folder (written atomically)")]
Seed = Annotated[int, typer.Option(help="random seed: the same seed gives byte-identical files")]
Overwrite = Annotated[bool, typer.Option(help="replace OUT if it exists")]


def _split_list(value: str | None) -> str | list[str] | None:
    if value is None:
        return None
    parts = [p.strip() for p in value.split(",") if p.strip()]
    return parts[0] if len(parts) == 1 else parts


def _report(out: Path) -> None:
    info = json.loads((out / "build.json").read_text()) if (out / "build.json").is_file() else {}
    typer.echo(f"wrote {out}")
    for split, counts in (info.get("splits") or info.get("counts") or {}).items():
        if isinstance(counts, dict):
            shown = ", ".join(f"{k} {v}" for k, v in counts.items() if isinstance(v, int | float))
            typer.echo(f"  {split}: {shown}")


@app.command()
def sudoku(
    out: Out,
    source: Annotated[str, typer.Option(help="generate | file | bank level(s), comma-separated")] = "generate",
    size: Annotated[int | None, typer.Option(help="board size for generate: 4, 6 or 9")] = None,
    train_size: Annotated[int | None, typer.Option(help="train puzzles before augmentation (default: all)")] = None,
    test_size: Annotated[int | None, typer.Option(help="test puzzles")] = None,
    test_fraction: Annotated[float | None, typer.Option(help="hold out this fraction of the source as test")] = None,
    test_source: Annotated[str | None, typer.Option(help="bank level(s) used only for test")] = None,
    train_file: Annotated[Path | None, typer.Option(help="user puzzles (official CSV or one per line)")] = None,
    test_file: Annotated[Path | None, typer.Option(help="user test puzzles")] = None,
    subsample_size: Annotated[int | None, typer.Option(help="randomly subsample the train split (official)")] = None,
    num_aug: Annotated[int, typer.Option(help="augmented copies per train puzzle (official: 1000)")] = 0,
    difficulty: Annotated[str | None, typer.Option(help="bucket(s): easy, moderate, hard (comma-separated)")] = None,
    min_backtracks: Annotated[int | None, typer.Option(help="minimum solver backtracks")] = None,
    max_backtracks: Annotated[int | None, typer.Option(help="maximum solver backtracks")] = None,
    target_clues: Annotated[int | None, typer.Option(help="generate: stop removing givens at this many clues")] = None,
    seed: Seed = 0,
    overwrite: Overwrite = False,
) -> None:
    """Sudoku: generated 4×4 / 6×6 / 9×9 puzzles with unique solutions, the real banks, or your own file."""
    from reasonlens.hrm.data.sudoku import SudokuBuildConfig, build_sudoku_dataset

    fields = dict(
        out_dir=out,
        source=_split_list(source),
        size=size,
        train_size=train_size,
        test_size=test_size,
        test_fraction=test_fraction,
        test_source=_split_list(test_source),
        train_file=train_file,
        test_file=test_file,
        subsample_size=subsample_size,
        num_aug=num_aug,
        difficulty=_split_list(difficulty),
        min_backtracks=min_backtracks,
        max_backtracks=max_backtracks,
        target_clues=target_clues,
        seed=seed,
        overwrite=overwrite,
    )
    with friendly_errors():
        built = build_sudoku_dataset(SudokuBuildConfig.from_dict({k: v for k, v in fields.items() if v is not None}))
    _report(built)


@app.command()
def maze(
    out: Out,
    source: Annotated[str, typer.Option(help="generate | csv")] = "generate",
    size: Annotated[int | None, typer.Option(help="maze side (default 30)")] = None,
    train_size: Annotated[int | None, typer.Option(help="train mazes (default 1000)")] = None,
    test_size: Annotated[int | None, typer.Option(help="test mazes (default 1000)")] = None,
    min_path_length: Annotated[
        int | None,
        typer.Option(help="min. path cells incl. S, G (default 111 on 30x30, else side)"),
    ] = None,
    aug: Annotated[bool, typer.Option(help="add the 8 dihedral variants of each train maze")] = False,
    train_csv: Annotated[Path | None, typer.Option(help="official CSV (source,q,a,rating) for --source csv")] = None,
    test_csv: Annotated[Path | None, typer.Option(help="official CSV for the test split")] = None,
    workers: Annotated[int | None, typer.Option(help="processes (default: all cores; same output)")] = None,
    seed: Seed = 0,
    overwrite: Overwrite = False,
) -> None:
    """Maze: Lehnert-style random mazes with BFS-optimal paths (Maze-Hard: 30×30, path > 110), or the official CSVs."""
    from reasonlens.hrm.data.maze import MazeBuildConfig, build_maze_dataset

    fields = dict(
        out_dir=out,
        source=source,
        size=size,
        train_size=train_size,
        test_size=test_size,
        min_path_length=min_path_length,
        aug=aug,
        train_csv=train_csv,
        test_csv=test_csv,
        workers=workers,
        seed=seed,
        overwrite=overwrite,
    )
    with friendly_errors():
        built = build_maze_dataset(MazeBuildConfig.from_dict({k: v for k, v in fields.items() if v is not None}))
    _report(built)


@app.command()
def arc(
    out: Out,
    dataset: Annotated[str, typer.Option(help="arc1 (training + evaluation + ConceptARC) | arc2")] = "arc1",
    num_aug: Annotated[int, typer.Option(help="dihedral + colour augmentations per task (official: 1000)")] = 1000,
    translate: Annotated[bool, typer.Option(help="random translation of train examples (official)")] = True,
    subsample_tasks: Annotated[int | None, typer.Option(help="keep at most this many tasks per source folder")] = None,
    seed: Seed = 42,
    overwrite: Overwrite = False,
) -> None:
    """ARC-AGI-1 / ARC-AGI-2 from the shipped task folders (evaluation demos in train, their tests in test)."""
    from reasonlens.hrm.data.arc import ARCBuildConfig, build_arc_dataset

    with friendly_errors():
        config = dict(
            out_dir=out,
            dataset=dataset,
            num_aug=num_aug,
            translate=translate,
            subsample_tasks=subsample_tasks,
            seed=seed,
            overwrite=overwrite,
        )
        built = build_arc_dataset(ARCBuildConfig.from_dict({k: v for k, v in config.items() if v is not None}))
    _report(built)


@app.command("arc-synthetic")
def arc_synthetic(
    out: Out,
    num_tasks: Annotated[int, typer.Option(help="tasks (round-robin over the families)")] = 200,
    canvas_size: Annotated[int, typer.Option(help="canvas side (seq_len = side²)")] = 10,
    num_aug: Annotated[int, typer.Option(help="augmentations per task")] = 0,
    seed: Seed = 0,
    overwrite: Overwrite = False,
) -> None:
    """Simplified synthetic ARC (pattern-completion task families, seed 003) for CPU-sized work."""
    from reasonlens.hrm.data.arc_synthetic import SyntheticARCConfig, build_synthetic_arc_dataset

    with friendly_errors():
        config = dict(
            out_dir=out, num_tasks=num_tasks, canvas_size=canvas_size, num_aug=num_aug, seed=seed, overwrite=overwrite
        )
        built = build_synthetic_arc_dataset(SyntheticARCConfig.from_dict(config))
    _report(built)
