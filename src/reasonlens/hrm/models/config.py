"""Typed, validated configs for the HRM family (HRM-ACT-v1, TRM, the direct-prediction baseline).

Field names and defaults are those of the official code (``HierarchicalReasoningModel_ACTV1Config``
in sapientinc/HRM, ``config/arch/hrm_v1.yaml``; ``TinyRecursiveReasoningModel_ACTV1Config`` and
``config/arch/trm.yaml`` in TinyRecursiveModels), so an official ``arch:`` block loads unchanged.
Where the official config silently accepts nonsense (unknown keys, ``hidden_size`` not divisible by
``num_heads``, ``H_cycles: 0``) ours stops at construction with :class:`ConfigError` naming the field.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, field_validator, model_validator

# re-exported: the HRM modules and users import these from here
from reasonlens.utils.config import ConfigError as ConfigError
from reasonlens.utils.config import StrictConfig as StrictConfig
from reasonlens.utils.config import format_validation_error as format_validation_error

ForwardDtype = Literal["bfloat16", "float16", "float32"]


class HRMConfig(StrictConfig):
    """Config of :class:`reasonlens.hrm.HRMACTv1` (defaults: ``config/arch/hrm_v1.yaml``)."""

    batch_size: int = Field(1, ge=1, description="local batch; sizes the sparse puzzle-embedding buffer")
    seq_len: int = Field(ge=1)
    puzzle_emb_ndim: int = Field(0, ge=0)
    num_puzzle_identifiers: int = Field(1, ge=1)
    vocab_size: int = Field(ge=1)

    H_cycles: int = Field(2, ge=1)
    L_cycles: int = Field(2, ge=1)
    H_layers: int = Field(4, ge=1)
    L_layers: int = Field(4, ge=1)

    hidden_size: int = Field(512, ge=1)
    expansion: float = Field(4.0, gt=0)
    num_heads: int = Field(8, ge=1)
    pos_encodings: Literal["rope", "learned"] = "rope"

    rms_norm_eps: float = Field(1e-5, gt=0)
    rope_theta: float = Field(10000.0, gt=0)

    halt_max_steps: int = Field(16, ge=1)
    halt_exploration_prob: float = Field(0.1, ge=0, le=1)

    forward_dtype: ForwardDtype = "bfloat16"
    # The official create_model passes causal=False; HRM attention is always bidirectional.
    causal: bool = False

    @field_validator("causal")
    @classmethod
    def _bidirectional_only(cls, value: bool) -> bool:
        if value:
            raise ValueError("HRM attention is bidirectional; causal=True is not supported")
        return value

    @model_validator(mode="after")
    def _check_shapes(self):
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})")
        if self.pos_encodings == "rope" and (self.hidden_size // self.num_heads) % 2:
            raise ValueError(
                f"RoPE needs an even head dim; hidden_size/num_heads = {self.hidden_size // self.num_heads}"
            )
        return self

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def prefix_len(self) -> int:
        """Positions prepended for the puzzle embedding: ceil(puzzle_emb_ndim / hidden_size) (1 for HRM)."""
        return math.ceil(self.puzzle_emb_ndim / self.hidden_size)

    @property
    def total_seq_len(self) -> int:
        """Sequence length the blocks see: prefix positions + ``seq_len``."""
        return self.seq_len + self.prefix_len


class TRMConfig(HRMConfig):
    """Config of :class:`reasonlens.hrm.TRM` (defaults: TinyRecursiveModels ``config/arch/trm.yaml``).

    ``H_cycles`` is the paper's T (recursions, T-1 of them without gradient), ``L_cycles`` its n
    (latent updates per recursion). ``H_layers`` is accepted and ignored, as in the official code.
    """

    H_cycles: int = Field(3, ge=1)
    L_cycles: int = Field(6, ge=1)
    H_layers: int = Field(0, ge=0)
    L_layers: int = Field(2, ge=1)
    pos_encodings: Literal["rope", "learned", "none"] = "rope"

    mlp_t: bool = False
    puzzle_emb_len: int = Field(16, ge=0, description="prefix positions; 0 means ceil(ndim / hidden)")
    no_ACT_continue: bool = True

    @property
    def prefix_len(self) -> int:
        if self.puzzle_emb_len == 0:
            return math.ceil(self.puzzle_emb_ndim / self.hidden_size)
        return self.puzzle_emb_len

    @model_validator(mode="after")
    def _check_prefix(self):
        if self.puzzle_emb_ndim > self.prefix_len * self.hidden_size:
            raise ValueError(
                f"puzzle_emb_ndim ({self.puzzle_emb_ndim}) does not fit in puzzle_emb_len "
                f"({self.prefix_len}) positions of hidden_size ({self.hidden_size})"
            )
        return self


class TransformerACTConfig(HRMConfig):
    """Config of :class:`reasonlens.hrm.TransformerACT` (the direct-prediction baseline). ``L_cycles`` and
    ``L_layers`` are accepted and ignored."""

    H_cycles: int = Field(1, ge=1)
    H_layers: int = Field(8, ge=1)
    L_layers: int = Field(0, ge=0)
    act_enabled: bool = True
