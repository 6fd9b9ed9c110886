"""Solving one Sudoku puzzle with an HRM-family checkpoint, ACT step by ACT step (``reasonlens solve``).

This module owns reading one puzzle (a string, or one line of a file of puzzles), checking that a checkpoint
is a Sudoku model of the puzzle's size, running the puzzle through the model in eval mode and recording what
every ACT step produced, and judging the grid by the rules of Sudoku — never against a label.

**Encoding.** A puzzle of side n (4, 6 or 9; n² characters, ``.`` or ``0`` for a blank, digits 1..n) is
encoded as the datasets are (:func:`reasonlens.hrm.data.sudoku.encode_board`, the official Sudoku encoding):
token = value + 1, so PAD 0, blank 1, digits 2..n+1. A Sudoku model of side n therefore has ``vocab_size``
n + 2 and ``seq_len`` n² (the puzzle-embedding prefix is not part of ``seq_len``); the puzzle identifier is 0.

**Rollout.** One eval-mode ACT loop (as :func:`reasonlens.hrm.evaluation.rollout.evaluate_model` runs it) of
``max_steps`` ACT steps (default: the model's ``halt_max_steps``; more is inference-time scaling, through
:func:`~reasonlens.hrm.evaluation.rollout.halting_at`). After every ACT step we keep:

- ``grid``: the model's prediction for every cell (argmax of the logits), decoded to digits; a predicted blank
  or PAD reads as 0 (blank). Given cells are *not* overwritten: a model that changes a given is shown doing so;
- ``changed``: the cells whose digit differs from the previous ACT step's grid (for ACT step 1: from the
  puzzle, i.e. every cell the model filled in);
- ``q_halt`` / ``q_continue``: the halting Q values (logits) of that ACT step, and ``would_halt``: whether the
  model's own halting rule fires there (:meth:`ACTModel.halt_signal`: HRM ``q_halt > q_continue``, TRM with
  ``no_ACT_continue`` ``q_halt > 0``). The rule stops a puzzle in training; evaluation runs every ACT step;
- ``valid``: the grid is a solution of the puzzle: it keeps every given and is a valid filled grid
  (:func:`~reasonlens.hrm.data.sudoku_solver.is_valid_solution`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from reasonlens.hrm.data.format import IGNORE_LABEL_ID
from reasonlens.hrm.data.sudoku import LENGTH_TO_SIZE, encode_board
from reasonlens.hrm.data.sudoku_solver import find_conflict, is_valid_solution
from reasonlens.hrm.evaluation.perturbed import check_rollout_args, perturbed_answers
from reasonlens.hrm.evaluation.rollout import check_evaluation_args, halting_at
from reasonlens.hrm.models.trm import TRM
from reasonlens.hrm.training.checkpoint import CheckpointError, load_checkpoint
from reasonlens.utils.errors import UserInputError

BLANKS = ".0"
DIGITS = "123456789"
PUZZLE_FORMAT = "81 characters (16 or 36 for a 4×4 or 6×6 model), '.' or '0' for a blank and digits 1-9"


class SolveError(UserInputError):
    """A puzzle, puzzle file, index or checkpoint that ``reasonlens solve`` cannot use."""


# ------------------------------------------------------------------------------------------------ reading


def parse_puzzle(text: str, where: str | None = None) -> np.ndarray:
    """A puzzle string (whitespace ignored) → board (n, n) int64 with 0 = blank; ``SolveError`` (naming
    ``where``, e.g. ``file:line``) on a wrong length, a character that is not allowed, or givens that break
    the rules."""
    prefix = f"{where}: " if where else ""
    text = "".join(text.split())
    size = LENGTH_TO_SIZE.get(len(text))
    if size is None:
        also = "" if where else " (or PUZZLE names a file of puzzles, one per line)"
        raise SolveError(f"{prefix}the puzzle has {len(text)} characters; a puzzle has {PUZZLE_FORMAT}{also}")
    for position, char in enumerate(text, start=1):
        if char not in BLANKS + DIGITS:
            raise SolveError(
                f"{prefix}invalid character {char!r} at position {position} of the puzzle; allowed: '.' or '0' "
                f"for a blank and digits 1-{size}"
            )
        if char in DIGITS and int(char) > size:
            raise SolveError(
                f"{prefix}digit {char} at position {position} of the puzzle is not allowed in a {size}×{size} Sudoku "
                f"(digits 1-{size})"
            )
    board = np.array([0 if char in BLANKS else int(char) for char in text], dtype=np.int64).reshape(size, size)
    conflict = find_conflict(board)
    if conflict:
        raise SolveError(f"{prefix}the givens break the rules: {conflict}")
    return board


def read_puzzle(source: str, index: int = 0) -> tuple[np.ndarray, str | None]:
    """``(board, where)`` for ``source``: a puzzle string, or the path of a file of puzzles, one per line
    (blank lines and ``#`` comments skipped; anything after a comma on a line, e.g. its solution, is ignored),
    of which ``index`` (from 0) picks one. ``where`` is ``file:line``, None for a puzzle string."""
    path = Path(source)
    if path.is_dir():
        raise SolveError(f"{source} is a folder; PUZZLE is a puzzle string or a file of puzzles, one per line")
    if not path.is_file():
        if re.search(r"[/\\]|\.[A-Za-z]\w*$", source):  # a folder in it, or a suffix such as .txt
            raise SolveError(
                f"{source}: no such puzzle file, and not a puzzle string either (a puzzle has {PUZZLE_FORMAT})"
            )
        if index != 0:
            raise SolveError(f"--index {index} picks a line of a puzzle file, but PUZZLE is a puzzle string")
        return parse_puzzle(source), None
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as err:
        raise SolveError(f"{path} is not UTF-8 text: {err}") from None
    puzzles = [(number, line.strip()) for number, line in enumerate(lines, start=1)]
    puzzles = [(number, line.split(",")[0]) for number, line in puzzles if line and not line.startswith("#")]
    if not puzzles:
        raise SolveError(f"{path} holds no puzzles (one per line; blank lines and '#' comments are skipped)")
    if not 0 <= index < len(puzzles):
        raise SolveError(
            f"--index {index} is out of range: {path} holds {len(puzzles)} puzzles (0..{len(puzzles) - 1})"
        )
    number, line = puzzles[index]
    where = f"{path}:{number}"
    return parse_puzzle(line, where), where


def check_sudoku_model(model, size: int, checkpoint: str | Path) -> None:
    """``SolveError`` unless ``model`` is a Sudoku model of side ``size`` (vocab n + 2, seq_len n²)."""
    vocab_size, seq_len = model.config.vocab_size, model.config.seq_len
    if (vocab_size, seq_len) == (size + 2, size * size):
        return
    side = vocab_size - 2
    hint = ""
    if side != size and side in LENGTH_TO_SIZE.values() and seq_len in (side * side, size * size):
        hint = f"; it fits {side}×{side} puzzles ({side * side} characters)"
    raise SolveError(
        f"{checkpoint} is not a {size}×{size} Sudoku model: that has vocab_size {size + 2} and seq_len "
        f"{size * size}, this one has vocab_size {vocab_size} and seq_len {seq_len}{hint}"
    )


def load_sudoku_model(checkpoint: str | Path, size: int, device: torch.device | str = "cpu"):
    """Load any HRM-family checkpoint (our run folder / ``model.safetensors``, or an official folder with
    ``all_config.yaml``) and check that it is a Sudoku model of side ``size``."""
    try:
        model = load_checkpoint(checkpoint, device=device)
    except CheckpointError:
        # An official checkpoint with rotary positions and no dataset beside it records no seq_len: give it
        # the puzzle's. Any other problem fails again, with the same message.
        model = load_checkpoint(checkpoint, device=device, seq_len=size * size)
    check_sudoku_model(model, size, checkpoint)
    return model


# ------------------------------------------------------------------------------------------------ judging


def solution_problem(puzzle: np.ndarray, grid: np.ndarray) -> str | None:
    """The first reason ``grid`` is not a solution of ``puzzle`` (a changed given, a blank, a broken rule),
    or None when it is one."""
    for row, col in np.argwhere((puzzle > 0) & (grid != puzzle)):
        return f"row {row + 1}, column {col + 1} is given as {puzzle[row, col]} but the grid has {grid[row, col]}"
    for row, col in np.argwhere(grid == 0):
        return f"row {row + 1}, column {col + 1} is blank"
    return find_conflict(grid)


def is_solution(puzzle: np.ndarray, grid: np.ndarray) -> bool:
    """``grid`` keeps every given of ``puzzle`` and is a valid filled grid (checked by the rules)."""
    givens = puzzle > 0
    return bool(np.array_equal(grid[givens], puzzle[givens])) and is_valid_solution(grid)


# ------------------------------------------------------------------------------------------------ rollout


@dataclass
class StepRecord:
    """What one ACT step produced (see the module docstring)."""

    act_step: int  # from 1
    grid: np.ndarray  # (n, n) int64, 0 = blank
    changed: list[tuple[int, int]]  # (row, column) from 0, cells that differ from the previous ACT step
    q_halt: float
    q_continue: float
    would_halt: bool
    valid: bool

    def to_dict(self, puzzle: np.ndarray) -> dict:
        givens = puzzle > 0
        overwritten = np.argwhere(givens & (self.grid != puzzle))
        return {
            "act_step": self.act_step,
            "grid": self.grid.tolist(),
            "changed": [list(cell) for cell in self.changed],
            "overwritten_givens": overwritten.tolist(),
            "q_halt": self.q_halt,
            "q_continue": self.q_continue,
            "would_halt": self.would_halt,
            "valid": self.valid,
        }


@dataclass
class PuzzleRollout:
    """One puzzle run for ``len(steps)`` ACT steps."""

    puzzle: np.ndarray  # (n, n) int64, 0 = blank
    halting_rule: str
    trained_act_steps: int
    steps: list[StepRecord] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.puzzle)

    @property
    def final_grid(self) -> np.ndarray:
        return self.steps[-1].grid

    @property
    def valid(self) -> bool:
        return self.steps[-1].valid

    @property
    def keeps_givens(self) -> bool:
        givens = self.puzzle > 0
        return bool(np.array_equal(self.final_grid[givens], self.puzzle[givens]))

    @property
    def halted_at(self) -> int | None:
        """The first ACT step at which the halting rule fires; None if it never does."""
        return next((step.act_step for step in self.steps if step.would_halt), None)

    @property
    def problem(self) -> str | None:
        """Why the final grid is not a solution (None when it is)."""
        return solution_problem(self.puzzle, self.final_grid)

    def to_dict(self) -> dict:
        return {
            "size": self.size,
            "puzzle": self.puzzle.tolist(),
            "act_steps": len(self.steps),
            "trained_act_steps": self.trained_act_steps,
            "halting_rule": self.halting_rule,
            "steps": [step.to_dict(self.puzzle) for step in self.steps],
            "final_grid": self.final_grid.tolist(),
            "valid": self.valid,
            "valid_grid": is_valid_solution(self.final_grid),
            "keeps_givens": self.keeps_givens,
            "problem": self.problem,
            "halted_at": self.halted_at,
        }


def halting_rule(model) -> str:
    """The halting rule of ``model`` in words (what :meth:`ACTModel.halt_signal` computes)."""
    return "q_halt > 0" if isinstance(model, TRM) and model.config.no_ACT_continue else "q_halt > q_continue"


@torch.inference_mode()
def solve_puzzle(model, puzzle: np.ndarray, max_steps: int | None = None) -> PuzzleRollout:
    """Run ``puzzle`` (n, n; 0 = blank) through ``model`` for ``max_steps`` ACT steps (default: the model's
    ``halt_max_steps``) in eval mode, from a fresh carry, on the model's device; record every ACT step."""
    check_evaluation_args(1, max_steps)
    puzzle = np.asarray(puzzle, dtype=np.int64)
    size = len(puzzle)
    check_sudoku_model(model, size, type(model).__name__)
    steps = max_steps or model.config.halt_max_steps
    device = next(model.parameters()).device
    batch = {
        "inputs": torch.as_tensor(encode_board(puzzle)[None], dtype=torch.int32, device=device),  # (1, n²)
        "puzzle_identifiers": torch.zeros(1, dtype=torch.int32, device=device),  # (1,)
    }
    rollout = PuzzleRollout(puzzle, halting_rule(model), model.config.halt_max_steps)
    was_training = model.training
    model.eval()
    previous = puzzle
    try:
        with halting_at(model, steps):
            carry = model.initial_carry(batch)
            for act_step in range(1, steps + 1):
                carry, outputs = model(carry, batch)
                logits = outputs["logits"][0].float()  # (n², vocab)
                q_halt, q_continue = outputs["q_halt_logits"][0], outputs["q_continue_logits"][0]  # () each
                if not (torch.isfinite(logits).all() and torch.isfinite(q_halt) and torch.isfinite(q_continue)):
                    raise SolveError(
                        f"the model's outputs at ACT step {act_step} are not finite (NaN or inf): its weights "
                        "hold NaN or inf, or overflow in this dtype"
                    )
                tokens = logits.argmax(-1).cpu().numpy().astype(np.int64)  # (n²,)
                grid = np.clip(tokens - 1, 0, size).reshape(size, size)  # PAD (0) and blank (1) read as 0
                rollout.steps.append(
                    StepRecord(
                        act_step=act_step,
                        grid=grid,
                        changed=[(int(r), int(c)) for r, c in np.argwhere(grid != previous)],
                        q_halt=float(q_halt),
                        q_continue=float(q_continue),
                        would_halt=bool(model.halt_signal(q_halt, q_continue)),
                        valid=is_solution(puzzle, grid),
                    )
                )
                previous = grid
    finally:
        model.train(was_training)
    return rollout


# ------------------------------------------------------------------------------------- perturbed rollouts


def solve_with_rollouts(
    model, puzzle: np.ndarray, rollouts: int, selection: str = "vote", noise: float = 0.0, max_steps=None, seed=0
) -> dict:
    """``rollouts`` perturbed rollouts of one puzzle (:mod:`reasonlens.hrm.evaluation.perturbed`: Sudoku
    symmetries, state noise if ``noise`` > 0), each answer mapped back and judged by the rules; the answer
    chosen by ``selection`` (``vote`` or ``q``). Rollout 1 is the plain rollout."""
    check_rollout_args(rollouts, selection, noise, True)
    puzzle = np.asarray(puzzle, dtype=np.int64)
    size = len(puzzle)
    check_sudoku_model(model, size, type(model).__name__)
    device = next(model.parameters()).device
    tokens = torch.as_tensor(encode_board(puzzle)[None], dtype=torch.int32, device=device)  # (1, n²)
    batch = {
        "inputs": tokens,
        "labels": torch.full_like(tokens, IGNORE_LABEL_ID),  # no label: every answer is judged by the rules
        "puzzle_identifiers": torch.zeros(1, dtype=torch.int32, device=device),
    }
    was_training = model.training
    model.eval()
    try:
        runs = perturbed_answers(model, [batch], rollouts, max_steps, "sudoku", True, noise, seed)
    finally:
        model.train(was_training)
    grids = [np.clip(answer[0].numpy().astype(np.int64) - 1, 0, size).reshape(size, size) for answer in runs.answers]
    chosen = int(runs.choose(selection)[0])
    valid = [is_solution(puzzle, grid) for grid in grids]
    return {
        "rollouts": rollouts,
        "selection": selection,
        "noise": noise,
        "chosen": chosen + 1,
        "agreeing": sum(np.array_equal(grid, grids[chosen]) for grid in grids),
        "distinct_answers": len({g.tobytes() for g in grids}),
        "valid_rollouts": int(sum(valid)),
        "grid": grids[chosen].tolist(),
        "valid": valid[chosen],
        "problem": solution_problem(puzzle, grids[chosen]),
        "per_rollout": [
            {"rollout": k + 1, "q_halt_sigmoid": float(runs.confidence[k, 0]), "valid": ok}
            for k, ok in enumerate(valid)
        ],
    }
