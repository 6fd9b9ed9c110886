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

**Resumable points** (:mod:`reasonlens.interp.prefix`; sweeps resume each patched row from the last one
before its first patched call). HRM-ACT-v1, TRM and the transformer baseline: the start of every ACT
step and the moment before every latent update in it — one ACT step is the update schedule of
:func:`latent_updates` (HRM and TRM: ``(L × L_cycles, H) × H_cycles``; the baseline: ``H × H_cycles``),
so a patch at ``z_H@s`` recomputes only step s's last H-update and the steps after it. The rollout that
stops at these points (:meth:`HRMAdapter.run_points`) makes the same module calls in the same order as
the model's own forward and gives bit-identical outputs (tested). Other inner models (study variants)
resume at the start of each ACT step only, through the model's own forward.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from reasonlens.hrm.data.format import IGNORE_LABEL_ID, DatasetError, load_split
from reasonlens.hrm.data.sampler import collate_examples
from reasonlens.hrm.evaluation.rollout import halting_at
from reasonlens.hrm.evaluation.scoring import score_predictions
from reasonlens.hrm.models.baselines import TransformerACT, TransformerInner
from reasonlens.hrm.models.hrm_act_v1 import ACTModel, Carry, HRMInner, InnerCarry
from reasonlens.hrm.models.trm import TRM, TRMInner
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


def latent_updates(model: ACTModel) -> list[tuple[str, str]] | None:
    """One eval ACT step's latent updates in order, as (module attribute of ``inner``, kind): ``low``
    is ``z_L = net(z_L, z_H + x)``, ``high`` is ``z_H = net(z_H, z_L)``, ``input`` is ``z_H = net(z_H, x)``.
    None for an inner model whose recursion this does not know."""
    c, kind = model.config, type(model.inner)
    if kind is HRMInner:
        return ([("L_level", "low")] * c.L_cycles + [("H_level", "high")]) * c.H_cycles
    if kind is TRMInner:
        return ([("L_level", "low")] * c.L_cycles + [("L_level", "high")]) * c.H_cycles
    if kind is TransformerInner:
        return [("H_level", "input")] * c.H_cycles
    return None


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

    # -- resumable points (see the module docstring) ------------------------------------------------

    def run_points(self, batch: dict[str, torch.Tensor], at_point) -> torch.Tensor:
        """:meth:`run`, calling ``at_point(state)`` at every resumable point."""
        if latent_updates(self.model) is None:
            return self._steps_from(batch, 0, None, at_point)
        return self._updates_from(batch, 0, self._first_state(batch), at_point)

    def run_with_grad(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """:meth:`run` with the gradient through every latent update and ACT step (the model's own forward
        runs all but the last update of a step without it and detaches the carry), for attribution patching."""
        if latent_updates(self.model) is None:
            raise InterpError(
                f"gradients through every cycle need a known recursion; {type(self.model.inner).__name__} "
                "is not HRM-ACT-v1, TRM or the transformer baseline — use exact patching"
            )
        return self._updates_from(batch, 0, self._first_state(batch), None)

    def _first_state(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """What the first ACT step starts from: every slot reset to the initial states."""
        inner, batch_size = self.model.inner, batch["inputs"].shape[0]
        halted = torch.ones(batch_size, dtype=torch.bool, device=self.device)
        start = inner.reset_carry(halted, inner.empty_carry(batch_size, self.device))
        return self._state(start.z_H, start.z_L)

    def run_from(self, batch: dict[str, torch.Tensor], point: int, state: dict[str, torch.Tensor]) -> torch.Tensor:
        if latent_updates(self.model) is None:
            return self._steps_from(batch, point, state, None)
        return self._updates_from(batch, point, state, None)

    @staticmethod
    def _state(z_H, z_L, x=None) -> dict[str, torch.Tensor]:
        state = {"z_H": z_H} if z_L is None else {"z_H": z_H, "z_L": z_L}
        return state if x is None else {**state, "x": x}

    def _updates_from(self, batch, point: int, state: dict, at_point) -> torch.Tensor:
        """Eval ACT steps as latent updates. Points per step: its start (state z_H, z_L), then before each
        update (state z_H, z_L and the step's input injection x): point = step·(updates + 1) + j."""
        inner, updates = self.model.inner, latent_updates(self.model)
        per_step = len(updates) + 1
        first_step, j = divmod(point, per_step)
        z_H, z_L, x = state["z_H"], state.get("z_L"), state.get("x")
        for step in range(first_step, self.max_steps):
            resumed_inside = step == first_step and j > 0
            if not resumed_inside:
                if at_point is not None:
                    at_point(self._state(z_H, z_L))
                x = inner.input_embeddings(batch["inputs"], batch["puzzle_identifiers"])  # (B, P + S, D)
            if not resumed_inside:
                cos_sin = inner.cos_sin()
            else:  # the rotary table is read without a module call: that call was made before the point
                cos_sin = inner.rotary_emb.forward() if hasattr(inner, "rotary_emb") else None
            for index, (name, kind) in enumerate(updates):
                if resumed_inside and index < j - 1:
                    continue
                if at_point is not None:
                    at_point(self._state(z_H, z_L, x))
                net = getattr(inner, name)
                if kind == "low":
                    z_L = net(z_L, z_H + x, cos_sin)
                elif kind == "high":
                    z_H = net(z_H, z_L, cos_sin)
                else:
                    z_H = net(z_H, x, cos_sin)
            logits = inner.lm_head(z_H)[:, inner.puzzle_emb_len :]  # (B, S, V): the prefix positions dropped
            inner.q_head(z_H[:, 0])  # called as the model does, so later calls keep their indices
        return logits

    def _steps_from(self, batch, step: int, state: dict | None, at_point) -> torch.Tensor:
        """Eval ACT steps through the model's own forward; points at the start of steps 1.. (state: the
        carry's latent states; a resumed carry holds the batch's rows, as every carry after step 0 does)."""
        if state is None:
            carry = self.model.initial_carry(batch)
        else:
            step += 1  # point p is the start of ACT step p + 1
            batch_size = batch["inputs"].shape[0]
            carry = Carry(
                InnerCarry(state["z_H"], state.get("z_L")),
                steps=torch.full((batch_size,), step, dtype=torch.int32, device=self.device),
                halted=torch.zeros(batch_size, dtype=torch.bool, device=self.device),
                current_data=dict(batch),
            )
        with halting_at(self.model, self.max_steps):
            for index in range(step, self.max_steps):
                if index > 0 and at_point is not None:
                    at_point(self._state(carry.inner_carry.z_H, carry.inner_carry.z_L))
                carry, outputs = self.model(carry, batch)
        return outputs["logits"]

    def score(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Token accuracy, exact solve and per-cell correctness of the last step's answer, and
        ``label_log_prob`` — the mean log-probability of the labels over the scored cells, the smooth
        metric attribution patching differentiates."""
        labels = batch["labels"]
        scores = score_predictions(logits.argmax(-1), labels)
        scored = labels != IGNORE_LABEL_ID  # (B, S)
        log_probs = torch.log_softmax(logits.float(), -1)  # (B, S, V)
        label_log_probs = log_probs.gather(-1, labels.long().clamp_min(0)[..., None])[..., 0]  # (B, S, V) -> (B, S)
        label_log_prob = (label_log_probs * scored).sum(-1) / scored.sum(-1).clamp_min(1)
        return {
            "accuracy": scores.accuracy,
            "exact": scores.exact.float(),
            "correct": scores.correct,
            "label_log_prob": label_log_prob,
        }

    def sites(self) -> dict:
        return probe_sites(self.model, lambda: self.run(self.batch([0])), self.aliases)

    def grid(self, tokens: np.ndarray) -> np.ndarray:
        side = round(len(tokens) ** 0.5)
        return np.asarray(tokens).reshape(side, side) if side * side == len(tokens) else np.asarray(tokens)[None]
