"""Variants of HRM-ACT-v1 for the exploration studies (``configs/studies/``), kept out of the official
model so that :class:`~reasonlens.hrm.models.hrm_act_v1.HRMACTv1` stays the published algorithm.

:class:`HRMStudyConfig` adds three fields to :class:`~reasonlens.hrm.models.config.HRMConfig`:

- ``gradient_steps``: how many of an ACT step's L-updates carry gradient — 1 is the official 1-step
  gradient, ``H_cycles·L_cycles`` backpropagation through the whole ACT step. Forward values do not
  depend on it; training memory does.
- ``state_noise``: in training mode, Gaussian noise of this std added to every new z_L and z_H (the
  states have RMS 1, so the std is relative).
- ``state_l1``: an L1 penalty of this weight on each ACT step's final states, ``state_l1 · (mean |z_H| +
  mean |z_L|)`` per row, returned as ``outputs["state_l1"]`` and added to the loss by the loss head.

:func:`build_hrm` returns the official class when every study field has its default (then the two
models are the same computation), and :class:`HRMACTv1Study` otherwise. A study run's checkpoint keeps
the arch name ``hrm_act_v1`` with the study fields in its model config.
"""

from __future__ import annotations

import torch
from pydantic import Field, model_validator

from reasonlens.hrm.models.config import HRMConfig
from reasonlens.hrm.models.hrm_act_v1 import HRMACTv1, HRMInner, InnerOutput

STUDY_DEFAULTS = {"gradient_steps": 1, "state_noise": 0.0, "state_l1": 0.0}


class HRMStudyConfig(HRMConfig):
    gradient_steps: int = Field(1, ge=1, description="L-updates per ACT step with gradient (1: official)")
    state_noise: float = Field(0.0, ge=0, description="std of training-time noise on every new state")
    state_l1: float = Field(0.0, ge=0, description="weight of the L1 penalty on each ACT step's final states")

    @model_validator(mode="after")
    def _check_gradient_steps(self):
        if self.gradient_steps > self.H_cycles * self.L_cycles:
            raise ValueError(
                f"gradient_steps ({self.gradient_steps}) can be at most H_cycles·L_cycles = "
                f"{self.H_cycles * self.L_cycles} (1: the 1-step gradient; the maximum: full BPTT)"
            )
        return self


def truncated_step(L_level, H_level, z_H, z_L, x, n_high: int, n_low: int, cos_sin, gradient_steps: int, noise):
    """The HRM ACT step with the last ``gradient_steps`` L-updates (and the H-updates after the first of
    them) carrying gradient, and ``noise`` > 0 added as N(0, noise²) to every new state."""
    grad = torch.is_grad_enabled()
    first_with_grad = n_high * n_low - gradient_steps  # index of the first L-update with gradient
    done = 0
    for _ in range(n_high):
        for _ in range(n_low):
            with torch.set_grad_enabled(grad and done >= first_with_grad):
                z_L = L_level(z_L, z_H + x, cos_sin)
                if noise:
                    z_L = z_L + noise * torch.randn_like(z_L)
            done += 1
        with torch.set_grad_enabled(grad and done > first_with_grad):
            z_H = H_level(z_H, z_L, cos_sin)
            if noise:
                z_H = z_H + noise * torch.randn_like(z_H)
    return z_H, z_L


class HRMStudyInner(HRMInner):
    def recur(self, z_H, z_L, x, cos_sin):
        c = self.config
        noise = c.state_noise if self.training else 0.0
        return truncated_step(
            self.L_level, self.H_level, z_H, z_L, x, c.H_cycles, c.L_cycles, cos_sin, c.gradient_steps, noise
        )


class HRMACTv1Study(HRMACTv1):
    """HRM-ACT-v1 with the study fields of :class:`HRMStudyConfig`."""

    config_class = HRMStudyConfig
    inner_class = HRMStudyInner

    def step_outputs(self, inner: InnerOutput) -> dict[str, torch.Tensor]:
        outputs = super().step_outputs(inner)
        if self.config.state_l1 > 0:
            states = (inner.states.z_H, inner.states.z_L)
            magnitude = sum(z.float().abs().mean(dim=(1, 2)) for z in states)  # (B,)
            outputs["state_l1"] = self.config.state_l1 * magnitude
        return outputs


def build_hrm(config: dict | HRMConfig) -> HRMACTv1:
    """The official model, or the study variant when a study field differs from its default."""
    fields = config.model_dump() if isinstance(config, HRMConfig) else dict(config)
    if all(fields.get(name, default) == default for name, default in STUDY_DEFAULTS.items()):
        return HRMACTv1({k: v for k, v in fields.items() if k not in STUDY_DEFAULTS})
    return HRMACTv1Study(fields)
