"""``reasonlens solve CHECKPOINT PUZZLE``: solve one Sudoku puzzle with an HRM-family checkpoint and print the
board after every ACT step (givens, cells the model filled, cells changed since the previous ACT step), the
halting Q values and, at the end, whether the grid is a solution by the rules; optionally as JSON, a PNG strip
and an animated GIF. The rollout itself is :mod:`reasonlens.hrm.evaluation.solve`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import typer

from reasonlens.cli.errors import user_errors
from reasonlens.hrm.data import sudoku_solver
from reasonlens.hrm.data.sudoku import encode_board
from reasonlens.hrm.evaluation.perturbed import SELECTIONS, check_rollout_args
from reasonlens.hrm.evaluation.rollout import check_evaluation_args
from reasonlens.hrm.evaluation.solve import (
    PuzzleRollout,
    SolveError,
    load_sudoku_model,
    read_puzzle,
    solve_puzzle,
    solve_with_rollouts,
)
from reasonlens.hrm.training.checkpoint import model_arch
from reasonlens.utils.device import resolve_device
from reasonlens.utils.io import write_json

LEGEND = "5 given · [4] filled by the model · !7! a given the model changed · * changed since the previous ACT step"


def check_output_file(path: Path | None, flag: str) -> None:
    """Refuse an output path that is a folder or lies under a file, before anything runs or is written."""
    if path is None:
        return
    if path.is_dir():
        raise SolveError(f"{flag} {path} is a folder; give the name of a file to write")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise SolveError(f"{flag} {path}: {parent} is a file, not a folder")
            break


def run_solve(
    checkpoint,
    puzzle: str,
    index: int = 0,
    max_steps=None,
    device="cpu",
    outputs=(),
    rollouts=1,
    select="vote",
    noise=0.0,
) -> dict:
    """Read the puzzle, load the checkpoint, run the ACT steps (and with ``rollouts`` > 1 that many perturbed
    rollouts, one answer chosen by ``select``); ``outputs`` are (path, flag) pairs checked before anything runs.
    Returns the rollout and what is printed and written."""
    check_evaluation_args(1, max_steps)
    check_rollout_args(rollouts, select, noise, True)
    for path, flag in outputs:
        check_output_file(path, flag)
    device = resolve_device(device)
    board, where = read_puzzle(puzzle, index)
    model = load_sudoku_model(checkpoint, len(board), device)
    rollout = solve_puzzle(model, board, max_steps)
    source = where or "command line"
    result = {"checkpoint": str(checkpoint), "source": source, "arch": model_arch(model), **rollout.to_dict()}
    if rollouts > 1:
        result["perturbed"] = solve_with_rollouts(model, board, rollouts, select, noise, max_steps)
    return {"rollout": rollout, "result": result}


# ------------------------------------------------------------------------------------------------ text


def cell_text(given: int, value: int, changed: bool) -> str:
    """Four characters: the digit (``.`` for blank) framed by its kind, then ``*`` if it changed."""
    digit = str(value) if value else "."
    if given and value == given:
        text, style = f" {digit} ", {"bold": True}
    elif given:
        text, style = f"!{digit}!", {"fg": "red", "bold": True}
    else:
        text, style = f"[{digit}]", {"fg": "cyan"}
    mark = typer.style("*", fg="yellow", bold=True) if changed else " "
    return typer.style(text, **style) + mark


def board_lines(puzzle: np.ndarray, grid: np.ndarray, changed: set[tuple[int, int]]) -> list[str]:
    """The board as text: one line per row, boxes separated by ``|`` and ``-`` lines."""
    size = len(puzzle)
    box_rows, box_cols = sudoku_solver.box_shape(size)
    lines = []
    for row in range(size):
        if row and row % box_rows == 0:
            lines.append("   " + "-+-".join("-" * 4 * box_cols for _ in range(size // box_cols)))
        cells = [cell_text(int(puzzle[row, c]), int(grid[row, c]), (row, c) in changed) for c in range(size)]
        boxes = ["".join(cells[c : c + box_cols]) for c in range(0, size, box_cols)]
        lines.append("   " + " | ".join(boxes))
    return lines


def print_rollout(result: dict, rollout: PuzzleRollout) -> None:
    size = rollout.size
    givens = int((rollout.puzzle > 0).sum())
    typer.echo(f"puzzle: {size}×{size}, {givens} givens ({result['source']})")
    typer.echo(
        f"checkpoint: {result['checkpoint']} ({result['arch']}, trained for {rollout.trained_act_steps} ACT steps); "
        f"running {len(rollout.steps)} ACT step{'s' if len(rollout.steps) > 1 else ''}"
    )
    typer.echo(f"legend: {LEGEND}")
    typer.echo(
        f"would halt: the model's halting rule, {rollout.halting_rule} (it stops a puzzle in training; evaluation "
        "runs every ACT step)"
    )
    for step in rollout.steps:
        typer.echo("")
        halt = typer.style("yes", fg="green", bold=True) if step.would_halt else "no"
        typer.echo(
            f"ACT step {step.act_step}/{len(rollout.steps)}  q_halt {step.q_halt:+.3f}  "
            f"q_continue {step.q_continue:+.3f}  would halt: {halt}  changed: {len(step.changed)} cells"
            + ("  (a solution)" if step.valid else "")
        )
        for line in board_lines(rollout.puzzle, step.grid, set(step.changed)):
            typer.echo(line)
    typer.echo("")
    if rollout.halted_at is None:
        typer.echo(f"halting: the rule ({rollout.halting_rule}) never fired in {len(rollout.steps)} ACT steps")
    else:
        typer.echo(f"halting: the model would halt at ACT step {rollout.halted_at} ({rollout.halting_rule})")
    if rollout.valid:
        typer.echo("valid: " + typer.style("true", fg="green", bold=True) + " (the final grid solves the puzzle)")
    else:
        typer.echo("valid: " + typer.style("false", fg="red", bold=True) + f" ({rollout.problem})")


def print_perturbed(result: dict, puzzle: np.ndarray) -> None:
    """The answer chosen among the perturbed rollouts, with how many agree and how many are solutions."""
    p = result["perturbed"]
    noise = f" and state noise {p['noise']}" if p["noise"] else ""
    typer.echo("")
    typer.echo(
        f"{p['rollouts']} rollouts (Sudoku symmetries{noise}): {p['distinct_answers']} distinct answers; "
        f"{p['valid_rollouts']} of {p['rollouts']} rollouts give a solution; chosen by {p['selection']}: "
        f"rollout {p['chosen']}, whose answer {p['agreeing']} of {p['rollouts']} give"
    )
    for line in board_lines(puzzle, np.asarray(p["grid"]), set()):
        typer.echo(line)
    if p["valid"]:
        typer.echo("valid: " + typer.style("true", fg="green", bold=True) + " (the chosen grid solves the puzzle)")
    else:
        typer.echo("valid: " + typer.style("false", fg="red", bold=True) + f" ({p['problem']})")


# ------------------------------------------------------------------------------------------------ pictures


def trajectories_of(rollout: PuzzleRollout):
    """The rollout as the one-puzzle :class:`~reasonlens.hrm.analysis.dynamics.Trajectories` the step pictures
    draw. The pictures colour a cell green when it agrees with the reference: the final grid if it solves the
    puzzle, else a solution found by the exact solver (the final grid when there is none)."""
    from reasonlens.hrm.analysis.dynamics import Trajectories

    size = rollout.size
    reference = rollout.final_grid
    if not rollout.valid:
        found = sudoku_solver.solve(rollout.puzzle).solution
        reference = found if found is not None else reference
    tokens = torch.as_tensor(np.stack([encode_board(step.grid) for step in rollout.steps]).astype(np.int64))
    return Trajectories(
        states={},
        logits=torch.nn.functional.one_hot(tokens, size + 2).float()[:, None],  # (steps, 1, cells, vocab)
        q_halt=torch.tensor([[step.q_halt] for step in rollout.steps]),  # (steps, 1)
        q_continue=torch.tensor([[step.q_continue] for step in rollout.steps]),  # (steps, 1)
        labels=torch.as_tensor(encode_board(reference).astype(np.int64))[None],  # (1, cells)
        inputs=torch.as_tensor(encode_board(rollout.puzzle).astype(np.int64))[None],  # (1, cells)
        prefix_len=0,
    )


def write_outputs(result: dict, rollout: PuzzleRollout, json_path=None, png=None, gif=None) -> list[Path]:
    written = []
    if json_path is not None:
        write_json(json_path, result)
        written.append(Path(json_path))
    if png is not None or gif is not None:
        from reasonlens.hrm.analysis import pictures

        trajectories = trajectories_of(rollout)
        if png is not None:
            written.append(pictures.step_strip(trajectories, 0, "sudoku", png))
        if gif is not None:
            written.append(pictures.step_gif(trajectories, 0, "sudoku", gif))
    return written


def solve(
    checkpoint: Annotated[
        Path, typer.Argument(help="run directory / model.safetensors, or an official checkpoint folder")
    ],
    puzzle: Annotated[
        str,
        typer.Argument(
            help="81 characters ('.' or '0' blank, digits 1-9; 16 or 36 for a 4×4 / 6×6 model), or a file of "
            "puzzles, one per line (blank lines and '#' comments skipped)"
        ),
    ],
    index: Annotated[int, typer.Option(help="which puzzle of the file (from 0)")] = 0,
    max_steps: Annotated[
        int | None, typer.Option(help="ACT steps to run (default: the model's halt_max_steps)")
    ] = None,
    json_path: Annotated[
        Path | None,
        typer.Option("--json", help="write every ACT step (grid, changed cells, Q values, would halt) as JSON"),
    ] = None,
    png: Annotated[Path | None, typer.Option(help="write the boards of all ACT steps as one PNG strip")] = None,
    gif: Annotated[
        Path | None, typer.Option(help="write the boards as an animated GIF, one frame per ACT step")
    ] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N | mps")] = "cpu",
    rollouts: Annotated[
        int, typer.Option(help="also run K perturbed rollouts (Sudoku symmetries) and choose one answer")
    ] = 1,
    select: Annotated[str, typer.Option(help=f"with --rollouts: how to choose ({' | '.join(SELECTIONS)})")] = "vote",
    noise: Annotated[float, typer.Option(help="with --rollouts: state-noise std for rollouts 2..K")] = 0.0,
) -> None:
    """Solve one Sudoku puzzle with an HRM-family checkpoint, printing the board after every ACT step with the
    halting Q values, and whether the final grid solves the puzzle (checked by the rules, never a label)."""
    with user_errors():
        outputs = [(json_path, "--json"), (png, "--png"), (gif, "--gif")]
        solved = run_solve(checkpoint, puzzle, index, max_steps, device, outputs, rollouts, select, noise)
        print_rollout(solved["result"], solved["rollout"])
        if "perturbed" in solved["result"]:
            print_perturbed(solved["result"], solved["rollout"].puzzle)
        for path in write_outputs(solved["result"], solved["rollout"], json_path, png, gif):
            typer.echo(f"wrote {path}")
