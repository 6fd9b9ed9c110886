"""Configs of the model and of SFT and RL training.

The model is a GPT-2 (``GPT2LMHeadModel``) of configurable size trained from scratch; ``size`` names a
preset and explicit fields override it. SFT runs ``transformers.Trainer``; RL runs trl's GRPO (see
:mod:`reasonlens.lm.training.rl_trainer` for why GRPO).
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from reasonlens.utils.config import StrictConfig

MODEL_SIZES = {  # name -> (n_layer, n_head, n_embd)
    "tiny": (2, 2, 32),
    "small": (4, 4, 128),
    "medium": (6, 8, 256),
    "gpt2": (12, 12, 768),
}


class ModelConfig(StrictConfig):
    size: str = "small"
    n_layer: int | None = Field(None, ge=1)
    n_head: int | None = Field(None, ge=1)
    n_embd: int | None = Field(None, ge=8)
    n_positions: int = Field(128, ge=16)
    vocab_size: int = Field(512, ge=300, description="byte-level BPE: 256 bytes + merges + special tokens")
    dropout: float = Field(0.0, ge=0, lt=1)

    @field_validator("size")
    @classmethod
    def _size(cls, value: str) -> str:
        if value not in MODEL_SIZES:
            raise ValueError(f"unknown model size {value!r}; allowed: {', '.join(MODEL_SIZES)}")
        return value

    @model_validator(mode="after")
    def _heads_divide(self) -> ModelConfig:
        _, heads, width = self.dims()
        if width % heads:
            raise ValueError(f"n_embd ({width}) must be divisible by n_head ({heads})")
        return self

    def dims(self) -> tuple[int, int, int]:
        layers, heads, width = MODEL_SIZES[self.size]
        return self.n_layer or layers, self.n_head or heads, self.n_embd or width


class SFTConfig(StrictConfig):
    """Supervised fine-tuning (here: training from scratch) with loss on the answer tokens only."""

    output_dir: str = "runs/lm/sft"
    model: ModelConfig = Field(default_factory=ModelConfig)
    epochs: float = Field(3.0, gt=0)
    max_steps: int = Field(-1, description="optimizer steps; overrides epochs when >= 1 (-1: train by epochs)")
    batch_size: int = Field(64, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    lr_scheduler: str = "cosine"
    eval_steps: int = Field(200, ge=1, description="evaluate (answer accuracy on val) and checkpoint every N steps")
    save_total_limit: int = Field(2, ge=1)
    logging_steps: int = Field(50, ge=1)
    eval_examples: int = Field(300, ge=1, description="examples per split in the final evaluation JSON")
    keep_steps: list[int] = Field(
        default_factory=list, description="also save the model at these optimizer steps (steps/step_N/)"
    )
    init_from: str | None = Field(
        None, description="continue from this checkpoint (its weights and tokenizer) instead of a fresh model"
    )
    seed: int = 0
    device: str = "auto"

    @field_validator("keep_steps")
    @classmethod
    def _positive_steps(cls, value: list[int]) -> list[int]:
        if any(step < 1 for step in value):
            raise ValueError(f"keep_steps must be optimizer steps >= 1, got {value}")
        return sorted(set(value))

    @field_validator("max_steps")
    @classmethod
    def _steps_or_epochs(cls, value: int) -> int:
        if value == 0 or value < -1:  # 0 used to mean "by epochs" silently
            raise ValueError(f"max_steps must be >= 1, or -1 to train by epochs; got {value}")
        return value


class RLConfig(StrictConfig):
    """GRPO from an SFT checkpoint, rewarded by the text game environment."""

    output_dir: str = "runs/lm/rl"
    max_steps: int = Field(200, ge=1)
    batch_size: int = Field(32, ge=1, description="completions per optimizer step")
    num_generations: int = Field(8, ge=2, description="completions per prompt (the GRPO group)")
    learning_rate: float = Field(2e-5, gt=0)
    beta: float = Field(0.0, ge=0, description="KL penalty to the SFT model (0: none, trl's default)")
    temperature: float = Field(1.0, gt=0)
    max_completion_length: int | None = Field(
        None, ge=1, description="tokens sampled per completion (default: what the answer format needs)"
    )
    format_reward: float = Field(0.0, ge=0, description="bonus for an answer that parses, right or wrong")
    mix: dict[str, float] = Field(
        default_factory=lambda: {"id": 1.0}, description="distribution -> share of RL prompts (id or OOD categories)"
    )
    n_prompts: int = Field(4000, ge=1, description="prompts generated for RL")
    eval_every: int = Field(
        25, ge=1, description="greedy success per distribution every N steps (more than max_steps: no curve)"
    )
    eval_examples: int = Field(200, ge=1)
    logging_steps: int = Field(5, ge=1)
    seed: int = 0
    device: str = "auto"

    @model_validator(mode="after")
    def _divisible(self) -> RLConfig:
        if self.batch_size % self.num_generations:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be a multiple of num_generations ({self.num_generations})"
            )
        if not self.mix or any(v < 0 for v in self.mix.values()) or sum(self.mix.values()) <= 0:
            raise ValueError("mix needs non-negative shares with a positive sum, e.g. {'id': 0.8, 'paraphrase': 0.2}")
        return self
