"""Perturbed rollouts at inference: K rollouts of every puzzle, each through an invertible task symmetry and/or
state noise, every answer mapped back to the original puzzle, then one chosen — by majority vote or by the Q
head's halting confidence.

Published: augmentation and input perturbation with voting lifted HRM on Sudoku-Extreme from 54.5% to 96.9%
(with model bootstrapping; Ren & Liu, arXiv 2601.10679); noise at every recursion step and choosing among K
rollouts by the Q head lifted TRM from 87.4% to 98.75% (PTRM, arXiv 2605.19943).

**Symmetries** (:class:`CellSymmetry`): a permutation of the cells plus a relabelling of the tokens, applied to
the inputs and inverted on the answer. Sudoku: the official transform family (digit relabelling, band / stack
and row / column-within-band permutations, transpose; :func:`reasonlens.hrm.data.sudoku.random_transform`);
Maze: the 8 dihedral maps of a square maze (rollout k uses map k mod 8). Rollout 0 is always the identity
without noise, so K = 1 is the plain evaluation. ARC has its own augmentation voting (``reasonlens evaluate``
on an ARC dataset).

**Noise**: with ``noise`` > 0, rollouts 1..K−1 add N(0, noise²) to every state the reasoning modules produce
(engine patches, :func:`reasonlens.hrm.analysis.dynamics.state_noise_patches`).

**Choice**: ``vote`` — the most frequent mapped-back answer (whole grids; ties go to the earliest rollout);
``q`` — the answer of the rollout whose final sigmoid(q_halt) is highest (ties: the earliest). Accuracy is
reported against K from one run of the largest K (the first K rollouts), with the oracle (any rollout right)
and the compute (ACT steps per puzzle).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from reasonlens.hrm.analysis.dynamics import rollout, state_noise_patches
from reasonlens.hrm.data.format import dihedral_transform
from reasonlens.hrm.data.sudoku import LENGTH_TO_SIZE, random_transform
from reasonlens.hrm.evaluation.scoring import score_predictions
from reasonlens.utils.errors import UserInputError
from reasonlens.utils.stats import paired_bootstrap

SELECTIONS = ("vote", "q")
SYMMETRY_TASKS = ("sudoku", "maze")


class RolloutError(UserInputError):
    """Perturbed rollouts asked of a task or with settings they cannot use."""


@dataclass(frozen=True)
class CellSymmetry:
    """A symmetry of a puzzle as a cell permutation and a token relabelling: the transformed puzzle's cell i is
    ``token_map[tokens[cell_order[i]]]``."""

    cell_order: np.ndarray  # (cells,) int
    token_map: np.ndarray  # (vocab,) int: the new token of each old token

    @classmethod
    def identity(cls, cells: int, vocab: int) -> CellSymmetry:
        return cls(np.arange(cells), np.arange(vocab))

    def apply(self, tokens: torch.Tensor) -> torch.Tensor:
        """(…, cells) tokens of the original puzzle → of the transformed one."""
        token_map = torch.as_tensor(self.token_map, device=tokens.device)
        return token_map[tokens[..., torch.as_tensor(self.cell_order, device=tokens.device)].long()].to(tokens.dtype)

    def invert(self, tokens: torch.Tensor) -> torch.Tensor:
        """(…, cells) tokens of the transformed puzzle (an answer) → of the original one."""
        inverse_map = torch.as_tensor(np.argsort(self.token_map), device=tokens.device)
        back = torch.as_tensor(np.argsort(self.cell_order), device=tokens.device)
        return inverse_map[tokens.long()][..., back].to(tokens.dtype)


def sudoku_symmetry(size: int, vocab: int, rng: np.random.Generator) -> CellSymmetry:
    """A random member of the official Sudoku transform family, on tokens (PAD 0, blank 1, digit d → d + 1;
    tokens past the digits, if the vocabulary has any, stay themselves)."""
    transform = random_transform(size, rng)
    positions = np.arange(size * size).reshape(size, size)
    if transform.transpose:
        positions = positions.T
    cell_order = positions[np.ix_(transform.row_perm, transform.col_perm)].reshape(-1)
    token_map = np.arange(vocab)
    token_map[2 : size + 2] = transform.digit_map[1:] + 1  # digit d (token d + 1) → digit_map[d] + 1
    return CellSymmetry(cell_order, token_map)


def maze_symmetry(side: int, vocab: int, tid: int) -> CellSymmetry:
    """Dihedral map ``tid`` (0..7) of a square maze of ``side`` × ``side`` cells; tokens unchanged."""
    positions = np.arange(side * side).reshape(side, side)
    return CellSymmetry(np.ascontiguousarray(dihedral_transform(positions, tid)).reshape(-1), np.arange(vocab))


def draw_symmetries(task: str, cells: int, vocab: int, count: int, seed: int = 0) -> list[CellSymmetry]:
    """``count`` symmetries for ``task`` (``sudoku`` / ``maze``), the identity first."""
    if task not in SYMMETRY_TASKS:
        raise RolloutError(
            f"rollouts with symmetries need a Sudoku or Maze dataset, this one is {task!r}; use --no-symmetries "
            "with --noise (ARC has its own augmentation voting)"
        )
    side = round(cells**0.5)
    if side * side != cells:
        raise RolloutError(f"symmetries need a square grid; {cells} cells is not one (use --no-symmetries --noise)")
    if task == "sudoku" and cells not in LENGTH_TO_SIZE:
        raise RolloutError(f"a Sudoku of {cells} cells has no transform family (4×4, 6×6 or 9×9 only)")
    rng = np.random.default_rng(seed)
    symmetries = [CellSymmetry.identity(cells, vocab)]
    for k in range(1, count):
        if task == "sudoku":
            symmetries.append(sudoku_symmetry(side, vocab, rng))
        else:
            symmetries.append(maze_symmetry(side, vocab, k % 8))
    return symmetries


def check_rollout_args(rollouts: int, selection: str, noise: float, symmetries: bool) -> None:
    if rollouts < 1:
        raise RolloutError(f"--rollouts must be at least 1, got {rollouts}")
    if selection not in SELECTIONS:
        raise RolloutError(f"--select {selection!r} is unknown; allowed: {', '.join(SELECTIONS)}")
    if noise < 0:
        raise RolloutError(f"--noise must be >= 0 (the std of the state noise), got {noise}")
    if rollouts > 1 and not symmetries and noise == 0:
        raise RolloutError("rollouts without symmetries and without --noise would all be the same: add one of them")


@dataclass
class PerturbedAnswers:
    """K rollouts of N puzzles, mapped back to the original puzzles."""

    answers: torch.Tensor  # (K, N, cells) tokens
    exact: torch.Tensor  # (K, N) bool, against the original labels
    confidence: torch.Tensor  # (K, N) sigmoid(q_halt) after the last ACT step
    labels: torch.Tensor  # (N, cells)
    steps: int

    def choose(self, selection: str, k: int | None = None) -> torch.Tensor:
        """(N,) the rollout chosen for each puzzle among the first ``k`` (default: all)."""
        k = k or self.answers.shape[0]
        if selection == "q":
            return self.confidence[:k].argmax(0)  # the first maximum on ties
        chosen = []
        for puzzle in range(self.answers.shape[1]):
            keys = [tuple(row) for row in self.answers[:k, puzzle].tolist()]
            counts = Counter(keys)
            chosen.append(max(range(k), key=lambda i: (counts[keys[i]], -i)))
        return torch.tensor(chosen)

    def chosen_exact(self, selection: str, k: int | None = None) -> torch.Tensor:
        return self.exact[self.choose(selection, k), torch.arange(self.exact.shape[1])]

    def gain(self, selection: str, k: int) -> dict:
        """Exact accuracy of the choice among the first ``k`` rollouts minus that of the plain rollout, with a
        95% paired bootstrap interval over puzzles."""
        chosen, plain = self.chosen_exact(selection, k).numpy(), self.exact[0].numpy()
        return {
            "rollouts": k,
            "selection": selection,
            "gain": float(chosen.mean() - plain.mean()),
            "interval_95": list(paired_bootstrap(chosen, plain)),
        }

    def curve(self, ks: Sequence[int]) -> list[dict]:
        """Exact accuracy of both choices and of the oracle for each K in ``ks``, with ACT steps per puzzle."""
        return [
            {
                "rollouts": k,
                "vote": float(self.chosen_exact("vote", k).float().mean()),
                "q": float(self.chosen_exact("q", k).float().mean()),
                "oracle": float(self.exact[:k].any(0).float().mean()),
                "act_steps_per_puzzle": k * self.steps,
            }
            for k in ks
        ]


def perturbed_answers(
    model,
    batches: Sequence[dict],
    rollouts: int,
    steps: int | None = None,
    task: str = "sudoku",
    symmetries: bool = True,
    noise: float = 0.0,
    seed: int = 0,
) -> PerturbedAnswers:
    """Run every batch ``rollouts`` times (module docstring) through the one eval rollout."""
    steps = steps or model.config.halt_max_steps
    cells, vocab = model.config.seq_len, model.config.vocab_size
    maps = (
        draw_symmetries(task, cells, vocab, rollouts, seed)
        if symmetries
        else [CellSymmetry.identity(cells, vocab)] * rollouts
    )
    answers, exact, confidence = [], [], []
    labels = torch.cat([b["labels"].cpu() for b in batches])
    for k, symmetry in enumerate(maps):
        transformed = [{**b, "inputs": symmetry.apply(b["inputs"])} for b in batches]
        patches = state_noise_patches(model, noise, seed + k) if noise > 0 and k > 0 else []
        trajectories = rollout(model, transformed, steps, patches)
        answer = symmetry.invert(trajectories.logits[-1].argmax(-1))  # (N, cells)
        answers.append(answer)
        exact.append(score_predictions(answer, labels).exact)
        confidence.append(torch.sigmoid(trajectories.q_halt[-1]))
    return PerturbedAnswers(torch.stack(answers), torch.stack(exact), torch.stack(confidence), labels, steps)


def rollout_counts(rollouts: int) -> list[int]:
    """1, 2, 4, … up to ``rollouts``, and ``rollouts`` itself."""
    return sorted({2**i for i in range(rollouts.bit_length()) if 2**i <= rollouts} | {rollouts})
