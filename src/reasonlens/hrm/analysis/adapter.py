"""The engine adapter of the HRM family: how :mod:`reasonlens.interp` runs an HRM, TRM or baseline on
puzzles of a dataset split, which sites exist, and how a run is scored.

**What runs.** An analysis run is an eval-mode ACT rollout: every puzzle runs exactly ``max_steps``
ACT steps from a fresh carry (eval never halts early, so every row makes the same module calls) and is
scored on the last ACT step's prediction: token accuracy over the labelled cells, exact solve, and which
cells are right (:func:`reasonlens.hrm.evaluation.scoring.score_predictions`).

**Call indices** (eval mode; training adds a 6-call target-Q pass per ACT step). With N = ``H_cycles``,
T = ``L_cycles``, in ACT step s, high-level cycle h and low-level step t:

- HRM-ACT-v1: ``inner.L_level`` call ``s·N·T + h·T + t``; ``inner.H_level`` call ``s·N + h``; a block
  ``inner.L_level.layers.i`` has the call index of its module.
- TRM (one net): ``inner.L_level`` runs N·(T+1) times per ACT step — per recursion T latent updates then
  the answer update.
- The transformer baseline: ``inner.H_level`` call ``s·H_cycles + h``.

**Aliases** ``z_H@s`` / ``z_L@s``: the high / low-level state *produced by* ACT step s (the carry the next
step starts from; ``z_H@s`` is what step s's answer is read from). For HRM that is the last
``H_level`` / ``L_level`` call of step s. Patching ``z_H@s`` therefore changes step s's output and every
later step. Positions are positions of the state: the puzzle-embedding prefix first
(:attr:`HRMAdapter.prefix_len` slots), then the puzzle's cells.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from reasonlens.hrm.data.format import DatasetError, load_split
from reasonlens.hrm.data.sampler import collate_examples
from reasonlens.hrm.evaluation.rollout import halting_at
from reasonlens.hrm.evaluation.scoring import score_predictions
from reasonlens.hrm.models.baselines import TransformerACT
from reasonlens.hrm.models.hrm_act_v1 import ACTModel
from reasonlens.hrm.models.trm import TRM
from reasonlens.hrm.training.checkpoint import load_checkpoint
from reasonlens.hrm.training.run_dataset import dataset_of_run
from reasonlens.interp import Alias, InterpError, probe_sites
from reasonlens.utils.device import resolve_device


def hrm_aliases(model: ACTModel) -> dict[str, Alias]:
    """``z_H`` / ``z_L`` as module-call aliases (see the module docstring)."""
    c = model.config
    if isinstance(model, TRM):
        per_step = c.H_cycles * (c.L_cycles + 1)
        return {
            "z_H": Alias("inner.L_level", per_step, per_step - 1, "answer state after each ACT step"),
            "z_L": Alias("inner.L_level", per_step, per_step - 2, "latent state after each ACT step"),
        }
    if isinstance(model, TransformerACT):
        return {"z_H": Alias("inner.H_level", c.H_cycles, c.H_cycles - 1, "state after each ACT step")}
    per_step_l = c.H_cycles * c.L_cycles
    return {
        "z_H": Alias("inner.H_level", c.H_cycles, c.H_cycles - 1, "high-level state after each ACT step"),
        "z_L": Alias("inner.L_level", per_step_l, per_step_l - 1, "low-level state after each ACT step"),
    }


def call_index(model: ACTModel, module: str, step: int, h_cycle: int = 0, l_cycle: int = 0) -> int:
    """The call index of ``inner.L_level`` / ``inner.H_level`` (or a block in them) for (ACT step, H
    cycle, L cycle), in eval mode."""
    c = model.config
    if isinstance(model, TRM):
        return step * c.H_cycles * (c.L_cycles + 1) + h_cycle * (c.L_cycles + 1) + l_cycle
    if module.startswith("inner.L_level"):
        return step * c.H_cycles * c.L_cycles + h_cycle * c.L_cycles + l_cycle
    if module.startswith("inner.H_level"):
        return step * c.H_cycles + h_cycle
    raise InterpError(
        f"{module!r} runs once per ACT step or is not a reasoning module; use inner.L_level / inner.H_level"
    )


class HRMAdapter:
    """Runs an HRM-family model on examples of a puzzle dataset split for ``max_steps`` ACT steps."""

    def __init__(
        self,
        model: ACTModel,
        dataset_dir: str | os.PathLike,
        split: str = "test",
        max_steps: int | None = None,
        device: str | torch.device = "cpu",
    ):
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.model = model.to(self.device).eval()
        self.dataset_dir = Path(dataset_dir)
        self.metadata, self.arrays = load_split(dataset_dir, split)
        if self.metadata.seq_len != model.config.seq_len:
            raise DatasetError(
                f"{dataset_dir} has puzzles of {self.metadata.seq_len} cells but the model was built "
                f"for {model.config.seq_len}"
            )
        if max_steps is not None and max_steps < 1:
            raise InterpError(f"--max_steps must be >= 1 (ACT steps per puzzle), got {max_steps}")
        self.max_steps = max_steps or model.config.halt_max_steps
        self.aliases = hrm_aliases(model)

    @classmethod
    def from_checkpoint(cls, checkpoint, data=None, split="test", max_steps=None, device="auto") -> HRMAdapter:
        data = dataset_of_run(checkpoint, data)
        meta, _ = load_split(data, split)
        model = load_checkpoint(checkpoint, seq_len=meta.seq_len, data_path=data)
        return cls(model, data, split, max_steps, device)

    @property
    def prefix_len(self) -> int:
        return self.model.inner.puzzle_emb_len

    @property
    def num_examples(self) -> int:
        return self.arrays.num_examples

    def batch(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        indices = np.asarray(indices)
        if indices.size and (indices.min() < 0 or indices.max() >= self.num_examples):
            raise InterpError(
                f"puzzle index {int(indices.max())} is out of range: the split has "
                f"{self.num_examples} puzzles (0..{self.num_examples - 1})"
            )
        return {k: v.to(self.device) for k, v in collate_examples(self.metadata, self.arrays, indices).items()}

    def batches(self, indices: Sequence[int], chunk_size: int = 64) -> list[dict[str, torch.Tensor]]:
        """The puzzles ``indices`` as batches of at most ``chunk_size`` rows, in order."""
        indices = list(indices)
        return [self.batch(indices[start : start + chunk_size]) for start in range(0, len(indices), chunk_size)]

    def run(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        carry = self.model.initial_carry(batch)
        with halting_at(self.model, self.max_steps):
            for _ in range(self.max_steps):
                carry, outputs = self.model(carry, batch)
        return outputs["logits"]

    def score(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        scores = score_predictions(logits.argmax(-1), batch["labels"])
        return {"accuracy": scores.accuracy, "exact": scores.exact.float(), "correct": scores.correct}

    def sites(self) -> dict:
        return probe_sites(self.model, lambda: self.run(self.batch([0])), self.aliases)

    def grid(self, tokens: np.ndarray) -> np.ndarray:
        side = round(len(tokens) ** 0.5)
        return np.asarray(tokens).reshape(side, side) if side * side == len(tokens) else np.asarray(tokens)[None]
