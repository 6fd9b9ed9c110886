"""Finite-time Lyapunov exponents of a recurrent reasoner's segment map ("failing by wandering": a 2026 draft
on TRM/HRM reports that the leading exponent separates failed from solved Sudoku-Extreme puzzles on the
official TRM, median +0.103 vs +0.012, AUC 0.993).

The segment map F is one eval-mode ACT step on a puzzle's fixed inputs, (z_H, z_L) → (z_H', z_L')
(:meth:`~reasonlens.hrm.models.hrm_act_v1.RecurrentCore.segment_map`). Along the trajectory z_0, z_1, … of the
one eval rollout (:func:`reasonlens.hrm.analysis.dynamics.rollout`), a :class:`LyapunovRecorder` pushes a
tangent vector through the Jacobian of every segment with a Jacobian-vector product (``torch.func.jvp``, no
Jacobian is ever formed) and renormalises it — power iteration with QR of a single column:

    w_t = J_F(z_{t−1}) v_{t−1},   g_t = ‖w_t‖,   v_t = w_t / g_t,   λ₁ = (1/(T − b)) Σ_{t>b} log g_t

per puzzle (the batch rows do not interact), over all positions of both states, after ``burn_in`` = b
segments in which v aligns with the leading direction. λ₁ < 0: nearby states converge (a stable fixed
point); λ₁ ≈ 0: neutral (a cycle, a rotation); λ₁ > 0: nearby states separate (wandering). The exponent is
per segment, in nats. Attention runs in PyTorch's math kernel here: the fused CPU kernel has no
forward-mode derivative.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.func import jvp
from torch.nn.attention import SDPBackend, sdpa_kernel

from reasonlens.hrm.analysis.dynamics import rollout
from reasonlens.hrm.evaluation.scoring import score_predictions
from reasonlens.hrm.models.hrm_act_v1 import InnerCarry
from reasonlens.interp import InterpError
from reasonlens.utils.stats import roc_auc


def _states(state: InnerCarry) -> tuple[torch.Tensor, ...]:
    return tuple(z.float() for z in (state.z_H, state.z_L) if z is not None)


def _row_norms(parts: Sequence[torch.Tensor]) -> torch.Tensor:
    """(N,) the norm of each row over every tensor of ``parts`` (each (N, ...))."""
    return torch.sqrt(sum(p.pow(2).reshape(p.shape[0], -1).sum(1) for p in parts))


class LyapunovRecorder:
    """An observer of :func:`~reasonlens.hrm.analysis.dynamics.rollout` that records log g_t for every puzzle
    and segment (module docstring); tangents start from a seeded random direction."""

    def __init__(self, model, puzzles: int, steps: int, seed: int = 0):
        self.model = model
        self.log_growth = torch.zeros(steps, puzzles)  # log g_t
        self.primal_error = 0.0  # the largest |F(z) from the jvp − the rollout's state|: the map is the rollout's
        self._generator = torch.Generator().manual_seed(seed)
        self._tangent: tuple[torch.Tensor, ...] = ()

    def __call__(self, step: int, rows: slice, batch: dict, before: InnerCarry, after: InnerCarry) -> None:
        primals = _states(before)
        if step == 0:
            noise = [torch.randn(p.shape, generator=self._generator).to(p.device) for p in primals]
            norms = _row_norms(noise).view(-1, 1, 1)
            self._tangent = tuple(n / norms for n in noise)
        segment = self.model.inner.segment_map(batch)
        dtype = primals[0].dtype

        def step_map(*states):
            z_H, z_L = (states[0], states[1]) if len(states) == 2 else (states[0], None)
            out = segment(z_H.to(before.z_H.dtype), None if z_L is None else z_L.to(before.z_L.dtype))
            return tuple(z.to(dtype) for z in out if z is not None)

        with sdpa_kernel([SDPBackend.MATH]):
            image, pushed = jvp(step_map, primals, self._tangent)
        self.primal_error = max(
            self.primal_error, max(float((i - a).abs().max()) for i, a in zip(image, _states(after), strict=True))
        )
        growth = _row_norms(pushed).clamp_min(1e-30)  # (N,)
        self.log_growth[step, rows] = growth.log().cpu()
        self._tangent = tuple(w / growth.view(-1, 1, 1) for w in pushed)


def lyapunov(model, batches: Sequence[dict], steps: int, burn_in: int = 2, seed: int = 0, bins: int = 20) -> dict:
    """λ₁ of every puzzle over ``steps`` segments, its relation to failure (AUC of λ₁ as a score for "fails",
    medians, histograms) and the running estimate (module docstring)."""
    if not 0 <= burn_in < steps:
        raise InterpError(f"--burn-in must be in 0..{steps - 1} (segments before λ₁ is averaged), got {burn_in}")
    puzzles = sum(b["inputs"].shape[0] for b in batches)
    recorder = LyapunovRecorder(model, puzzles, steps, seed)
    trajectories = rollout(model, batches, steps, observe=recorder)
    solved = score_predictions(trajectories.logits[-1].argmax(-1), trajectories.labels).exact  # (N,)
    exponents = recorder.log_growth[burn_in:].mean(0)  # (N,)
    running = recorder.log_growth.cumsum(0) / torch.arange(1, steps + 1).view(-1, 1)  # (steps, N)
    edges = np.histogram_bin_edges(exponents.numpy(), bins=bins)

    def summary(mask: torch.Tensor) -> dict | None:
        if not mask.any():
            return None
        values = exponents[mask].double()
        return {
            "puzzles": int(mask.sum()),
            "median": float(values.median()),
            "mean": float(values.mean()),
            "q25": float(torch.quantile(values, 0.25)),
            "q75": float(torch.quantile(values, 0.75)),
            "histogram": np.histogram(values.numpy(), bins=edges)[0].tolist(),
        }

    return {
        "puzzles": puzzles,
        "steps": steps,
        "burn_in": burn_in,
        "exact": float(solved.float().mean()),
        "auc_failure": roc_auc(exponents.numpy(), (~solved).numpy()),
        "solved": summary(solved),
        "failed": summary(~solved),
        "share_positive": float((exponents > 0).float().mean()),
        "histogram_edges": edges.tolist(),
        "running_median": running.median(1).values.tolist(),
        "primal_error": recorder.primal_error,
        "per_puzzle": [
            {"lambda1": float(e), "exact": bool(s)} for e, s in zip(exponents.tolist(), solved.tolist(), strict=True)
        ],
    }
