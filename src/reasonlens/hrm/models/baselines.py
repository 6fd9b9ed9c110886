"""Baselines built from the same parts as HRM-ACT-v1.

- :class:`TransformerACT` — the "direct prediction" baseline of the HRM paper and the ARC Prize
  analysis (``transformers_baseline.py`` / ``hrm_act_v2``): one plain post-norm transformer of
  ``H_layers`` blocks (8 by default, as many as HRM's 4 + 4, hence the same parameter count), run
  ``H_cycles`` times per ACT step on ``z_H + x``, with gradient, inside the same ACT outer loop
  (deep supervision, Q-halting). ``act_enabled: false`` turns the Q-halting off (every slot runs
  ``halt_max_steps`` ACT steps in training too).
- :class:`HRM` — the paper-notation model of seed 003, ``HRM(input_dim, hidden_dim, output_dim, N, T)``,
  for vector inputs: f_I (linear), f_L and f_H (reasoning modules of :class:`~reasonlens.hrm.models.layers.Block`),
  f_O (linear); N high-level cycles of T low-level steps with the 1-step gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from reasonlens.hrm.models.config import TransformerACTConfig
from reasonlens.hrm.models.hrm_act_v1 import ACTModel, RecurrentCore, hierarchical_step
from reasonlens.hrm.models.layers import Block, CastedLinear, ReasoningModule, RotaryEmbedding, trunc_normal_init_

# --------------------------------------------------------------------------------------------
# Direct prediction: a plain transformer in the ACT loop


class TransformerInner(RecurrentCore):
    has_L_state = False

    def build_levels(self) -> None:
        self.H_level = ReasoningModule([self.make_block() for _ in range(self.config.H_layers)])

    def recur(self, z_H, z_L, x, cos_sin):
        for _ in range(self.config.H_cycles):
            z_H = self.H_level(z_H, x, cos_sin)
        return z_H, None


class TransformerACT(ACTModel):
    config_class = TransformerACTConfig
    inner_class = TransformerInner

    def act_active(self) -> bool:
        return self.config.act_enabled and super().act_active()


# --------------------------------------------------------------------------------------------
# The paper-notation HRM for vector inputs


@dataclass
class HRMState:
    """High- and low-level states, each (B, S, hidden). ``detach()`` cuts the graph between ACT steps."""

    z_H: torch.Tensor
    z_L: torch.Tensor

    def detach(self) -> HRMState:
        return HRMState(self.z_H.detach(), self.z_L.detach())


class HRM(nn.Module):
    """``HRM(input_dim, hidden_dim, output_dim, N, T)``: N high-level cycles, T low-level steps each.

    Input (B, input_dim) is one token; (B, seq_len, input_dim) is a sequence (RoPE positions).
    ``model(x)`` starts from the fixed initial states and returns the output (B, [S,] output_dim);
    ``model(z, x)`` continues from state ``z`` (``None`` = initial) and returns ``(new_state, output)``,
    the form deep supervision uses (``z, y_hat = model(z, x); ...; z = z.detach()``).

    Only the last L and H updates carry gradient (the 1-step gradient); every earlier update runs
    under ``torch.no_grad()``, so training memory does not grow with N·T.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        output_dim: int,
        N: int = 2,
        T: int = 2,
        num_layers: int = 2,
        num_heads: int | None = None,
        expansion: float = 4.0,
        seq_len: int = 1,
        norm_eps: float = 1e-5,
    ):
        super().__init__()
        num_heads = num_heads or max(1, hidden_dim // 64)
        for name, value in dict(
            input_dim=input_dim,
            hidden_dim=hidden_dim,
            output_dim=output_dim,
            N=N,
            T=T,
            num_layers=num_layers,
            seq_len=seq_len,
        ).items():
            if value < 1:
                raise ValueError(f"HRM: {name} must be >= 1, got {value}")
        if hidden_dim % num_heads:
            raise ValueError(f"HRM: hidden_dim ({hidden_dim}) must be divisible by num_heads ({num_heads})")
        self.N, self.T, self.seq_len = N, T, seq_len

        self.input_embedding = CastedLinear(input_dim, hidden_dim, bias=True)  # f_I
        self.L_net = ReasoningModule([Block(hidden_dim, num_heads, expansion, norm_eps) for _ in range(num_layers)])
        self.H_net = ReasoningModule([Block(hidden_dim, num_heads, expansion, norm_eps) for _ in range(num_layers)])
        self.output_head = CastedLinear(hidden_dim, output_dim, bias=True)  # f_O
        if seq_len > 1:
            self.rotary_emb = RotaryEmbedding(hidden_dim // num_heads, seq_len, base=10000.0)
        self.H_init = nn.Buffer(trunc_normal_init_(torch.empty(hidden_dim), std=1))
        self.L_init = nn.Buffer(trunc_normal_init_(torch.empty(hidden_dim), std=1))

    def initial_state(self, x: torch.Tensor) -> HRMState:
        tokens = self._as_tokens(x)
        shape = (tokens.shape[0], tokens.shape[1], self.H_init.shape[0])
        return HRMState(self.H_init.expand(shape).clone(), self.L_init.expand(shape).clone())

    def _as_tokens(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:
            x = x.unsqueeze(1)  # (B, 1, input_dim)
        if x.ndim != 3 or x.shape[1] not in (1, self.seq_len) or (x.shape[1] != self.seq_len and self.seq_len > 1):
            raise ValueError(
                f"HRM expects input (B, {self.input_embedding.weight.shape[1]}) or "
                f"(B, {self.seq_len}, {self.input_embedding.weight.shape[1]}); got {tuple(x.shape)}"
            )
        return x

    def segment(self, state: HRMState, x: torch.Tensor) -> tuple[HRMState, torch.Tensor]:
        tokens = self._as_tokens(x)
        injection = self.input_embedding(tokens)  # (B, S, hidden)
        cos_sin = self.rotary_emb() if hasattr(self, "rotary_emb") else None
        # L updates every step, H once per T steps; only the last L and H updates carry gradient
        z_H, z_L = hierarchical_step(self.L_net, self.H_net, state.z_H, state.z_L, injection, self.N, self.T, cos_sin)
        output = self.output_head(z_H)  # (B, S, output_dim)
        if x.ndim == 2:
            output = output.squeeze(1)
        return HRMState(z_H, z_L), output

    def forward(self, state_or_x, x: torch.Tensor | None = None):
        if x is None:
            return self.segment(self.initial_state(state_or_x), state_or_x)[1]
        state = state_or_x if state_or_x is not None else self.initial_state(x)
        return self.segment(state, x)
