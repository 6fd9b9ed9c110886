"""Running a converted GPT-2 (HookedTransformer) on sets of prompts and capturing activations, through the
interp engine (TransformerLens hook points are modules, so ``blocks.2.hook_resid_post`` is a site).

A :class:`PromptSet` is a list of examples tokenised once up to the decision
(:func:`~reasonlens.lm.tasks.formatting.decision_text`: the prompt, and in the worked format also the
reference work up to its final ``Answer:``), **left-padded** to one width so that every
prompt ends at the last position (and rows of different sets line up from the end), with the first
token of the right and wrong answers and the absolute index of each named position:

- ``final`` — the last token (``Answer:``), where the answer is predicted;
- ``cards_end`` — the last token of the last card line;
- ``rule_end`` — the last token of the rule line.

:class:`LMAdapter` is what the engine runs: the logits at the final position, scored as ``logit_diff``
(right − wrong answer token), ``correct`` (the greedy next token is the right one) and ``p_correct``.
Its resumable points (:mod:`reasonlens.interp.prefix`) are the residual stream before each block and
before the final layer norm, so a patch in block l recomputes blocks l.. only (TransformerLens's
``start_at_layer``; the block-by-block run gives the same logits bit for bit).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from reasonlens.interp import capture
from reasonlens.lm.errors import LMError
from reasonlens.lm.tasks.formatting import LABELS, check_length, decision_text


def answer_tokens(tokenizer) -> dict[str, int]:
    """The first token of `` BIG`` and of `` SMALL`` (they must differ for the logit difference)."""
    tokens = {label: tokenizer(f" {label}", add_special_tokens=False)["input_ids"][0] for label in LABELS}
    if len(set(tokens.values())) != len(tokens):
        raise LMError(
            "the answers ' BIG' and ' SMALL' start with the same token; the analyses need answer_format='label'"
        )
    return tokens


def _token_at(offsets: list[tuple[int, int]], char: int) -> int:
    for index, (start, end) in enumerate(offsets):
        if start <= char < end:
            return index
    raise LMError(f"no token covers character {char}")


@dataclass
class PromptSet:
    input_ids: torch.Tensor  # (N, T) left-padded
    attention_mask: torch.Tensor  # (N, T)
    correct: torch.Tensor  # (N,) first token of the right answer
    wrong: torch.Tensor  # (N,) first token of the other label
    positions: dict[str, torch.Tensor]  # name -> (N,) absolute index
    rows: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    @property
    def width(self) -> int:
        return self.input_ids.shape[1]

    @classmethod
    def build(cls, tokenizer, examples: Sequence[dict], max_length: int, width: int | None = None) -> PromptSet:
        examples = list(examples)
        if not examples:
            raise LMError("no examples to analyse")
        answers = answer_tokens(tokenizer)
        texts = [decision_text(e) for e in examples]
        encoded = [tokenizer(t, add_special_tokens=False, return_offsets_mapping=True) for t in texts]
        for row in encoded:
            check_length(len(row["input_ids"]) + 1, max_length, "prompt + answer")
        width = width or max(len(row["input_ids"]) for row in encoded)
        n = len(examples)
        input_ids = torch.full((n, width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        positions = {name: torch.zeros(n, dtype=torch.long) for name in ("final", "cards_end", "rule_end")}
        for i, (example, row) in enumerate(zip(examples, encoded)):
            ids, length = row["input_ids"], len(row["input_ids"])
            if length > width:
                raise LMError(f"prompt of {length} tokens does not fit the set's width {width}")
            start = width - length
            input_ids[i, start:] = torch.tensor(ids)
            mask[i, start:] = 1
            prompt = example["prompt"]  # the decision text starts with it
            positions["final"][i] = width - 1
            positions["rule_end"][i] = start + _token_at(row["offset_mapping"], prompt.index("\nCards:") - 1)
            positions["cards_end"][i] = start + _token_at(row["offset_mapping"], prompt.rindex("\n\n") - 1)
        correct = torch.tensor([answers[e["label"]] for e in examples])
        wrong = torch.tensor([answers["SMALL" if e["label"] == "BIG" else "BIG"] for e in examples])
        return cls(input_ids, mask, correct, wrong, positions, [dict(e) for e in examples])

    def batch(self, indices: Sequence[int], device) -> dict[str, torch.Tensor]:
        index = torch.as_tensor(list(indices), dtype=torch.long)
        return {
            "input_ids": self.input_ids[index].to(device),
            "attention_mask": self.attention_mask[index].to(device),
            "correct": self.correct[index].to(device),
            "wrong": self.wrong[index].to(device),
        }


class LMAdapter:
    """The interp engine's view of a HookedTransformer on a :class:`PromptSet`."""

    def __init__(self, model, prompts: PromptSet):
        self.model, self.prompts, self.aliases = model, prompts, {}
        self.device = next(model.parameters()).device

    def batch(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        return self.prompts.batch(indices, self.device)

    def run(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = self.model(batch["input_ids"], attention_mask=batch["attention_mask"], padding_side="left")
        return logits[:, -1].float()

    def run_points(self, batch: dict[str, torch.Tensor], at_point) -> torch.Tensor:
        """:meth:`run` block by block; point l (state: ``residual``, (B, T, d)) is before block l, point
        n_layers before the final layer norm."""
        mask = batch["attention_mask"]
        residual = self.model(batch["input_ids"], attention_mask=mask, padding_side="left", stop_at_layer=0)
        for layer in range(self.model.cfg.n_layers):
            at_point({"residual": residual})
            residual = self.model(residual, start_at_layer=layer, stop_at_layer=layer + 1, attention_mask=mask)
        at_point({"residual": residual})
        return self.run_from(batch, self.model.cfg.n_layers, {"residual": residual})

    def run_from(self, batch: dict[str, torch.Tensor], point: int, state: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = self.model(state["residual"], start_at_layer=point, attention_mask=batch["attention_mask"])
        return logits[:, -1].float()

    def score(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        right = logits.gather(-1, batch["correct"][:, None])[:, 0]
        wrong = logits.gather(-1, batch["wrong"][:, None])[:, 0]
        return {
            "logit_diff": right - wrong,
            "correct": (logits.argmax(-1) == batch["correct"]).float(),
            "p_correct": torch.softmax(logits, -1).gather(-1, batch["correct"][:, None])[:, 0],
        }


def residual_sites(n_layers: int, layers: Sequence[int] | None = None) -> dict[str, str]:
    """{label: hook name}: ``emb`` (before block 0) and ``L<l>`` (after block l)."""
    layers = range(n_layers) if layers is None else layers
    for layer in layers:
        if not 0 <= layer < n_layers:
            raise LMError(f"layer {layer} does not exist; the model has layers 0..{n_layers - 1}")
    return {"emb": "blocks.0.hook_resid_pre", **{f"L{layer}": f"blocks.{layer}.hook_resid_post" for layer in layers}}


@torch.no_grad()
def cache_activations(
    model, prompts: PromptSet, sites: Sequence[str], positions: Sequence[str] | None = None, batch_size: int = 64
) -> dict[tuple[str, str], torch.Tensor]:
    """{(site, position name): (N, d) activations}; position ``"all"`` gives (N, T, d)."""
    adapter = LMAdapter(model, prompts)
    positions = list(positions or ["final"])
    out: dict[tuple[str, str], list[torch.Tensor]] = {}
    for start in range(0, len(prompts), batch_size):
        indices = list(range(start, min(start + batch_size, len(prompts))))
        batch = adapter.batch(indices)
        with capture(model, sites, to_cpu=True) as cache:
            adapter.run(batch)
        for site in sites:
            values = cache[(site, 0)].float()  # (B, T, ...)
            for name in positions:
                if name == "all":
                    picked = values
                else:
                    rows = prompts.positions[name][indices]
                    picked = values[torch.arange(len(indices)), rows]
                out.setdefault((site, name), []).append(picked)
    return {key: torch.cat(chunks) for key, chunks in out.items()}
