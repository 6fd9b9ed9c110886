"""A causal LM seen as a policy over answers: greedy or sampled generation that stops at EOS or a newline.
Evaluation and the RL curves use it; trl's GRPO trainer takes the model itself (GRPO needs no value head,
see :mod:`reasonlens.lm.training.rl_trainer`), as a :class:`GPT2MaskPositions`.

Left padding puts every prompt's last token at the final position; position ids are computed from the
attention mask so a padded prompt sees the same positions as an unpadded one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import GPT2LMHeadModel

from reasonlens.lm.models.lm_loader import encode_prompts
from reasonlens.lm.tasks.formatting import is_worked

LABEL_NEW_TOKENS = 6  # " 12 BIG" and shorter
WORKED_NEW_TOKENS = 160  # a worked answer of nine cards with two-digit numbers fits


def completion_budget(answer_format: str) -> int:
    """Tokens to generate for an answer of ``answer_format``."""
    return WORKED_NEW_TOKENS if answer_format == "worked" else LABEL_NEW_TOKENS


def mask_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that count only real tokens: a left-padded prompt gets 0, 1, ... from its first token."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


@dataclass
class Policy:
    model: object
    tokenizer: object
    max_length: int

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def generate(
        self, prompts: list[str], max_new_tokens: int | None = None, greedy: bool = True, temperature: float = 1.0
    ) -> list[str]:
        """Completions (text after the prompt): a one-line answer is cut at its first newline, a worked answer
        (the prompt ends in ``Work:``) runs to EOS. ``max_new_tokens`` defaults to what the format needs."""
        worked = [is_worked(prompt) for prompt in prompts]
        if max_new_tokens is None:
            max_new_tokens = completion_budget("worked" if any(worked) else "label")
        batch = encode_prompts(self.tokenizer, prompts, self.max_length, self.device)
        max_new_tokens = min(max_new_tokens, self.max_length - batch["input_ids"].shape[1])
        output = self.model.generate(
            **batch,
            max_new_tokens=max(1, max_new_tokens),
            do_sample=not greedy,
            temperature=temperature if not greedy else None,
            top_k=None,
            top_p=None,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.tokenizer.eos_token_id,
        )
        texts = self.tokenizer.batch_decode(output[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
        return [text if multiline else text.split("\n")[0] for text, multiline in zip(texts, worked, strict=True)]


class GPT2MaskPositions(GPT2LMHeadModel):
    """``GPT2LMHeadModel`` that derives position ids from the attention mask when none are given.

    Generation computes positions from the mask, but trl's GRPO scores log-probs with a plain forward that
    passes none, and GPT-2 then uses 0..T-1: a left-padded prompt would be scored at other positions than
    it was sampled at. This class makes both agree; it saves as a plain GPT-2 (:func:`as_plain_gpt2`).
    """

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None, **kwargs):
        if position_ids is None and attention_mask is not None and past_key_values is None:
            position_ids = mask_positions(attention_mask)
        return super().forward(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            **kwargs,
        )


def as_plain_gpt2(model):
    """The same weights as a plain ``GPT2LMHeadModel`` (what checkpoints hold)."""
    model.__class__ = GPT2LMHeadModel
    model.config.architectures = ["GPT2LMHeadModel"]
    return model
