"""HRM-ACT-v1: the Hierarchical Reasoning Model with adaptive computation time.

Numerically equivalent to ``HierarchicalReasoningModel_ACTV1`` of sapientinc/HRM (``models/hrm/hrm_act_v1.py``):
same module tree and state-dict keys (``inner.H_level.layers.0.self_attn.qkv_proj.weight``, ...), same
initialisation draws, same cycle schedule, carry semantics, halting and target-Q pass.

Two pieces, as upstream:

- an *inner* model (:class:`RecurrentCore` and its subclasses) that runs one ACT step:
  embed the puzzle, recur the latent states, read the answer (``lm_head``) and the halting Q values
  (``q_head`` on prefix position 0);
- an *ACT wrapper* (:class:`ACTModel`) that keeps a carry across calls, resets the slots that halted
  and swaps in new data for them, and decides which slots halt after this ACT step.

TRM (``reasonlens.hrm.models.trm``) and the direct-prediction baseline (``reasonlens.hrm.models.baselines``) are
subclasses that change only the recursion (and, for TRM, the halting rule).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from huggingface_hub import ModelHubMixin
from torch import nn

from reasonlens.hrm.models.config import HRMConfig
from reasonlens.hrm.models.layers import (
    Block,
    CastedEmbedding,
    CastedLinear,
    CosSin,
    ReasoningModule,
    RotaryEmbedding,
    trunc_normal_init_,
)
from reasonlens.hrm.models.sparse_embedding import CastedSparseEmbedding
from reasonlens.utils.device import DTYPES

# --------------------------------------------------------------------------------------------
# Carries


@dataclass
class InnerCarry:
    """Latent states of every batch slot, each (B, prefix + seq_len, hidden) in the forward dtype.
    ``z_L`` is ``None`` for models with a single state (the direct-prediction baseline)."""

    z_H: torch.Tensor
    z_L: torch.Tensor | None = None


@dataclass
class Carry:
    """What persists between ACT steps: latent states, per-slot step counts (int32), halted
    flags (bool; every slot starts halted) and the data each slot is currently working on."""

    inner_carry: InnerCarry
    steps: torch.Tensor
    halted: torch.Tensor
    current_data: dict[str, torch.Tensor] = field(default_factory=dict)


class InnerOutput(NamedTuple):
    """What the inner model returns for one ACT step (the same five fields for every model)."""

    carry: InnerCarry  # the new states, detached: what the next ACT step starts from
    logits: torch.Tensor  # (B, seq_len, vocab) in the forward dtype
    q_halt: torch.Tensor  # (B,) fp32
    q_continue: torch.Tensor  # (B,) fp32
    states: InnerCarry  # the same states before detaching (with gradient in training; for state losses)


# --------------------------------------------------------------------------------------------
# Inner models


class RecurrentCore(nn.Module):
    """Everything an HRM-family inner model shares: token / puzzle / position embeddings, the LM and
    Q heads and the fixed initial states. Subclasses build their reasoning modules in
    :meth:`build_levels` and define one ACT step's recursion in :meth:`recur`.

    Construction order matters for bit-identical init (the official order): embed_tokens, lm_head,
    q_head, puzzle_emb, positions, levels, H_init, L_init, then the Q-head zero/-5 fill.
    """

    has_L_state = True

    def __init__(self, config: HRMConfig):
        super().__init__()
        self.config = config
        self.forward_dtype = DTYPES[config.forward_dtype]
        self.embed_scale = math.sqrt(config.hidden_size)
        embed_init_std = 1.0 / self.embed_scale

        self.embed_tokens = CastedEmbedding(config.vocab_size, config.hidden_size, embed_init_std, self.forward_dtype)
        self.lm_head = CastedLinear(config.hidden_size, config.vocab_size, bias=False)
        self.q_head = CastedLinear(config.hidden_size, 2, bias=True)

        self.puzzle_emb_len = config.prefix_len
        if config.puzzle_emb_ndim > 0:
            self.puzzle_emb = CastedSparseEmbedding(
                config.num_puzzle_identifiers,
                config.puzzle_emb_ndim,
                batch_size=config.batch_size,
                init_std=0,
                cast_to=self.forward_dtype,
            )

        if config.pos_encodings == "rope":
            self.rotary_emb = RotaryEmbedding(config.head_dim, config.total_seq_len, config.rope_theta)
        elif config.pos_encodings == "learned":
            self.embed_pos = CastedEmbedding(
                config.total_seq_len, config.hidden_size, embed_init_std, self.forward_dtype
            )

        self.build_levels()

        # Fixed (never trained) initial states, drawn directly in the forward dtype as upstream.
        self.H_init = nn.Buffer(trunc_normal_init_(torch.empty(config.hidden_size, dtype=self.forward_dtype), std=1))
        if self.has_L_state:
            self.L_init = nn.Buffer(
                trunc_normal_init_(torch.empty(config.hidden_size, dtype=self.forward_dtype), std=1)
            )

        # Q head starts at "continue": weight 0, bias -5 (sigmoid(-5) ≈ 0.007).
        with torch.no_grad():
            self.q_head.weight.zero_()
            self.q_head.bias.fill_(-5)

    # -- construction hooks -------------------------------------------------------------------

    def make_block(self) -> Block:
        c = self.config
        return Block(c.hidden_size, c.num_heads, c.expansion, c.rms_norm_eps)

    def build_levels(self) -> None:
        raise NotImplementedError

    def recur(self, z_H: torch.Tensor, z_L: torch.Tensor | None, x: torch.Tensor, cos_sin: CosSin | None):
        """One ACT step of latent updates; returns the new (z_H, z_L)."""
        raise NotImplementedError

    # -- I/O ----------------------------------------------------------------------------------

    def cos_sin(self) -> CosSin | None:
        return self.rotary_emb() if hasattr(self, "rotary_emb") else None

    def input_embeddings(self, inputs: torch.Tensor, puzzle_identifiers: torch.Tensor) -> torch.Tensor:
        """(B, seq_len) token ids → (B, prefix + seq_len, hidden) input injection, scaled by sqrt(hidden)."""
        embedding = self.embed_tokens(inputs.to(torch.int32))  # (B, S, D)
        if self.config.puzzle_emb_ndim > 0:
            puzzle_embedding = self.puzzle_emb(puzzle_identifiers)  # (B, ndim)
            pad_count = self.puzzle_emb_len * self.config.hidden_size - puzzle_embedding.shape[-1]
            if pad_count > 0:
                puzzle_embedding = F.pad(puzzle_embedding, (0, pad_count))
            prefix = puzzle_embedding.view(-1, self.puzzle_emb_len, self.config.hidden_size)  # (B, P, D)
            embedding = torch.cat((prefix, embedding), dim=-2)  # (B, P + S, D)
        if self.config.pos_encodings == "learned":
            # scale by 1/sqrt(2) to keep the variance of (token + position)
            embedding = 0.707106781 * (embedding + self.embed_pos.embedding_weight.to(self.forward_dtype))
        return self.embed_scale * embedding

    def empty_carry(self, batch_size: int, device: torch.device | None = None) -> InnerCarry:
        shape = (batch_size, self.config.total_seq_len, self.config.hidden_size)
        device = device if device is not None else self.H_init.device

        def zeros():
            return torch.zeros(shape, dtype=self.forward_dtype, device=device)

        return InnerCarry(z_H=zeros(), z_L=zeros() if self.has_L_state else None)

    def reset_carry(self, reset_flag: torch.Tensor, carry: InnerCarry) -> InnerCarry:
        flag = reset_flag.view(-1, 1, 1)
        z_L = torch.where(flag, self.L_init, carry.z_L) if self.has_L_state else None
        return InnerCarry(z_H=torch.where(flag, self.H_init, carry.z_H), z_L=z_L)

    def segment_map(self, batch: dict[str, torch.Tensor]):
        """One ACT step on the fixed inputs of ``batch`` as a pure function of the latent state,
        ``(z_H, z_L) -> (z_H', z_L')`` (the segment map whose Jacobian the Lyapunov analysis probes)."""
        x = self.input_embeddings(batch["inputs"], batch["puzzle_identifiers"])
        cos_sin = self.cos_sin()
        return lambda z_H, z_L: self.recur(z_H, z_L, x, cos_sin)

    def forward(self, carry: InnerCarry, batch: dict[str, torch.Tensor]) -> InnerOutput:
        """One ACT step from ``carry`` on ``batch`` (see :class:`InnerOutput`)."""
        x = self.input_embeddings(batch["inputs"], batch["puzzle_identifiers"])  # (B, P + S, D)
        z_H, z_L = self.recur(carry.z_H, carry.z_L, x, self.cos_sin())
        new_carry = InnerCarry(z_H=z_H.detach(), z_L=z_L.detach() if z_L is not None else None)
        logits = self.lm_head(z_H)[:, self.puzzle_emb_len :]  # (B, S, V): the prefix positions dropped
        q_logits = self.q_head(z_H[:, 0]).to(torch.float32)  # (B, 2), read at prefix position 0
        return InnerOutput(new_carry, logits, q_logits[..., 0], q_logits[..., 1], InnerCarry(z_H, z_L))


class HRMInner(RecurrentCore):
    """Two reasoning modules. Per ACT step with H_cycles=N, L_cycles=T: N·T − 1 L-updates and N − 1
    H-updates without gradient, then one L-update and one H-update with gradient (the 1-step
    gradient). With N = T = 2 the call order is L, L, H, L (no grad), L, H (grad).

    L's injection is ``z_H + x``; H's is ``z_L`` (H never sees the input directly).
    """

    def build_levels(self) -> None:
        self.H_level = ReasoningModule([self.make_block() for _ in range(self.config.H_layers)])
        self.L_level = ReasoningModule([self.make_block() for _ in range(self.config.L_layers)])

    def recur(self, z_H, z_L, x, cos_sin):
        return hierarchical_step(
            self.L_level, self.H_level, z_H, z_L, x, self.config.H_cycles, self.config.L_cycles, cos_sin
        )


def hierarchical_step(L_level, H_level, z_H, z_L, x, n_high: int, n_low: int, cos_sin=None):
    """HRM's ACT step: ``n_high`` cycles of ``n_low`` L-updates (from ``z_H + x``) each followed by an
    H-update (from ``z_L``). All but the last L-update and the last H-update run without gradient; those
    two carry it (the 1-step gradient of the paper and the official code)."""
    with torch.no_grad():
        for high in range(n_high):
            for low in range(n_low):
                if not (high == n_high - 1 and low == n_low - 1):
                    z_L = L_level(z_L, z_H + x, cos_sin)
            if high != n_high - 1:
                z_H = H_level(z_H, z_L, cos_sin)
    z_L = L_level(z_L, z_H + x, cos_sin)
    z_H = H_level(z_H, z_L, cos_sin)
    return z_H, z_L


# --------------------------------------------------------------------------------------------
# ACT wrapper


class ACTModel(nn.Module, ModelHubMixin, library_name="reasonlens", tags=["reasoning", "hrm", "act"]):
    """Adaptive-computation wrapper shared by the family: ``carry, outputs = model(carry, batch)``.

    Per call, for every slot: reset the latent state and step count of halted slots and give them the
    new batch row; run one ACT step; ``steps += 1``; halt at ``halt_max_steps``. In training (and
    ``halt_max_steps > 1``) a slot also halts when the halting rule fires, unless exploration (with
    probability ``halt_exploration_prob``) drew a minimum step count U{2..max} not yet reached, and
    a target for the continue-Q is computed from one more no-grad ACT step. In eval every slot runs
    exactly ``halt_max_steps`` ACT steps.
    """

    config_class: type[HRMConfig] = HRMConfig
    inner_class: type[RecurrentCore] = HRMInner

    def __init__(self, config_dict: dict | HRMConfig):
        super().__init__()
        self.config = self.config_class.from_dict(config_dict)
        self.inner = self.inner_class(self.config)
        self._hub_mixin_config = None  # config.yaml (our checkpoint format) is the config; no config.json

    # -- the Hugging Face Hub layout (huggingface_hub.ModelHubMixin) --------------------------------
    # ``save_pretrained(folder)`` writes our checkpoint (model.safetensors + config.yaml, mirrored in the Hub's
    # config.json, which the Hub counts downloads by; loading reads config.yaml) and a model card;
    # ``from_pretrained(folder or Hub id)`` loads any checkpoint ``load_checkpoint`` reads, contacting the Hub
    # only for an id that is not a local folder; ``push_to_hub(repo_id)`` publishes.

    def _save_pretrained(self, save_directory) -> None:
        from reasonlens.hrm.training.checkpoint import save_checkpoint
        from reasonlens.utils.io import read_yaml, write_json

        folder = save_checkpoint(self, save_directory)
        write_json(folder / "config.json", read_yaml(folder / "config.yaml"))

    @classmethod
    def _from_pretrained(
        cls, *, model_id, revision, cache_dir, force_download, local_files_only, token, **overrides
    ) -> ACTModel:
        from pathlib import Path

        from reasonlens.hrm.training.checkpoint import CheckpointError, load_checkpoint

        for hub_only in ("proxies", "resume_download"):  # passed by older huggingface_hub versions
            overrides.pop(hub_only, None)
        folder = Path(model_id)
        if not folder.exists():
            from huggingface_hub import snapshot_download

            folder = Path(
                snapshot_download(
                    repo_id=str(model_id),
                    revision=revision,
                    cache_dir=cache_dir,
                    force_download=force_download,
                    local_files_only=local_files_only,
                    token=token,
                )
            )
        model = load_checkpoint(folder, **overrides)
        if not isinstance(model, cls):
            raise CheckpointError(f"{model_id} holds a {type(model).__name__}, not a {cls.__name__}")
        return model

    def __getattr__(self, name: str):
        # ``model.puzzle_emb`` is ``model.inner.puzzle_emb`` (the official wrapper's property). Done
        # here rather than as a property so a model without one says why (and hasattr() is False).
        if name == "puzzle_emb":
            inner = self._modules["inner"]
            if "puzzle_emb" in inner._modules:
                return inner._modules["puzzle_emb"]
            raise AttributeError("this model has no puzzle embedding (config.puzzle_emb_ndim is 0)")
        return super().__getattr__(name)

    def initial_carry(self, batch: dict[str, torch.Tensor]) -> Carry:
        """A carry with every slot halted, so the first call loads the whole batch."""
        inputs = batch["inputs"]
        batch_size = inputs.shape[0]
        return Carry(
            inner_carry=self.inner.empty_carry(batch_size),
            steps=torch.zeros((batch_size,), dtype=torch.int32, device=inputs.device),
            halted=torch.ones((batch_size,), dtype=torch.bool, device=inputs.device),
            current_data={k: torch.empty_like(v) for k, v in batch.items()},
        )

    # -- halting rules (overridden by TRM) ----------------------------------------------------

    def halt_signal(self, q_halt: torch.Tensor, q_continue: torch.Tensor) -> torch.Tensor:
        return q_halt > q_continue

    def uses_target_q(self) -> bool:
        return True

    def act_active(self) -> bool:
        return self.training and self.config.halt_max_steps > 1

    def step_outputs(self, inner: InnerOutput) -> dict[str, torch.Tensor]:
        """What one call returns besides the carry (study variants add to it)."""
        return {"logits": inner.logits, "q_halt_logits": inner.q_halt, "q_continue_logits": inner.q_continue}

    # -- forward ------------------------------------------------------------------------------

    def forward(self, carry: Carry, batch: dict[str, torch.Tensor]) -> tuple[Carry, dict[str, torch.Tensor]]:
        halted = carry.halted
        inner_carry = self.inner.reset_carry(halted, carry.inner_carry)
        steps = torch.where(halted, 0, carry.steps)
        current_data = {
            k: torch.where(halted.view((-1,) + (1,) * (batch[k].ndim - 1)), batch[k], v)
            for k, v in carry.current_data.items()
        }

        step = self.inner(inner_carry, current_data)
        inner_carry, q_halt, q_continue = step.carry, step.q_halt, step.q_continue
        outputs = self.step_outputs(step)

        with torch.no_grad():
            steps = steps + 1
            is_last_step = steps >= self.config.halt_max_steps
            halted = is_last_step
            if self.act_active():
                halted = halted | self.halt_signal(q_halt, q_continue)
                # Exploration: with prob p, a minimum number of steps drawn from U{2..max}
                explore = torch.rand_like(q_halt) < self.config.halt_exploration_prob
                min_halt_steps = explore * torch.randint_like(steps, low=2, high=self.config.halt_max_steps + 1)
                halted = halted & (steps >= min_halt_steps)
                if self.uses_target_q():
                    # Bootstrapped target (no replay buffer or target network, cf. PQN): the Q values
                    # of one more ACT step from the new carry on the same data.
                    following = self.inner(inner_carry, current_data)
                    next_q_halt, next_q_continue = following.q_halt, following.q_continue
                    outputs["target_q_continue"] = torch.sigmoid(
                        torch.where(is_last_step, next_q_halt, torch.maximum(next_q_halt, next_q_continue))
                    )

        return Carry(inner_carry, steps, halted, current_data), outputs


class HRMACTv1(ACTModel):
    """HRM-ACT-v1 (sapientinc/HRM ``HierarchicalReasoningModel_ACTV1``).

    >>> model = HRMACTv1(dict(seq_len=81, vocab_size=11, puzzle_emb_ndim=512))   # the Sudoku model
    >>> sum(p.numel() for p in model.parameters())
    27275266
    """
