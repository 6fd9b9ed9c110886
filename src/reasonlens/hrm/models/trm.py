"""TRM, the Tiny Recursive Model (TinyRecursiveModels ``models/recursive_reasoning/trm.py``), on HRM's parts.

What differs from HRM-ACT-v1, and nothing else:

- **one network**: a single ``L_level`` (2 layers by default) updates both the latent ``z_L`` ("z")
  and the answer state ``z_H`` ("y");
- **recursion**: T − 1 recursions without gradient (each: n updates of z_L from ``z_H + x``, then
  one update of z_H from z_L), then one full recursion *with* gradient (back-propagation through
  its n + 1 calls, no 1-step approximation). T = ``H_cycles``, n = ``L_cycles``;
- **halting**: with ``no_ACT_continue`` (default) a slot halts when ``q_halt > 0`` and there is no
  target-Q pass and no continue loss; otherwise HRM's rule and target pass;
- a 16-position puzzle prefix (``puzzle_emb_len``), ``pos_encodings: none`` allowed, and
  ``mlp_t``: a SwiGLU across the sequence axis instead of attention.

Train with an :class:`reasonlens.hrm.training.ema.EMA` of the weights (the TRM recipe, ``ema_rate`` 0.999).
"""

from __future__ import annotations

import torch

from reasonlens.hrm.models.config import TRMConfig
from reasonlens.hrm.models.hrm_act_v1 import ACTModel, RecurrentCore
from reasonlens.hrm.models.layers import Block, ReasoningModule


class TRMInner(RecurrentCore):
    def make_block(self) -> Block:
        c = self.config
        sequence_mlp_len = c.total_seq_len if c.mlp_t else None
        return Block(c.hidden_size, c.num_heads, c.expansion, c.rms_norm_eps, sequence_mlp_len)

    def build_levels(self) -> None:
        self.L_level = ReasoningModule([self.make_block() for _ in range(self.config.L_layers)])

    def recur(self, z_H, z_L, x, cos_sin):
        net = self.L_level
        with torch.no_grad():
            for _ in range(self.config.H_cycles - 1):
                for _ in range(self.config.L_cycles):
                    z_L = net(z_L, z_H + x, cos_sin)
                z_H = net(z_H, z_L, cos_sin)
        for _ in range(self.config.L_cycles):  # the last recursion is back-propagated in full
            z_L = net(z_L, z_H + x, cos_sin)
        z_H = net(z_H, z_L, cos_sin)
        return z_H, z_L


class TRM(ACTModel):
    """TRM-ACT (TinyRecursiveModels ``TinyRecursiveReasoningModel_ACTV1``); same carry and call surface
    as :class:`reasonlens.hrm.HRMACTv1`."""

    config_class = TRMConfig
    inner_class = TRMInner

    def halt_signal(self, q_halt, q_continue):
        if self.config.no_ACT_continue:
            return q_halt > 0
        return q_halt > q_continue

    def uses_target_q(self) -> bool:
        return not self.config.no_ACT_continue
