"""The scoring game as a gym-style environment for RL: ``reset`` samples a rule and cards and returns the
prompt; ``step`` takes the model's generated text, parses the answer and returns reward 1 if the label is
right, else 0, plus an optional format bonus for an answer that parses. One step per episode.

It follows gymnasium's signatures (``reset(seed) -> (obs, info)``, ``step(action) -> (obs, reward,
terminated, truncated, info)``) without subclassing ``gymnasium.Env``: observations and actions are
free text, which gymnasium's spaces do not describe well, and the lm extra then needs no gymnasium.
trl's GRPO uses :meth:`TextGameEnv.sample` for prompts and :meth:`TextGameEnv.score` as its reward.
"""

from __future__ import annotations

import random

from reasonlens.lm.config.task_config import TaskConfig
from reasonlens.lm.errors import LMError
from reasonlens.lm.tasks.formatting import parse_answer
from reasonlens.lm.tasks.generators import make_example


class TextGameEnv:
    def __init__(
        self,
        task_config: TaskConfig,
        mix: dict[str, float] | None = None,
        format_reward: float = 0.0,
        seed: int = 0,
    ):
        self.config = TaskConfig.from_dict(task_config)
        self.mix = dict(mix or {"id": 1.0})
        for name in self.mix:
            if name != "id":
                self.config.check_category(name)
        self.format_reward = format_reward
        self.rng = random.Random(f"{seed}-rl")
        self.example: dict | None = None

    def sample(self, n: int | None = None) -> dict | list[dict]:
        """One example (or ``n``) drawn from the distribution mix."""
        names, weights = list(self.mix), list(self.mix.values())
        draw = lambda: make_example(self.config, self.rng, self.rng.choices(names, weights)[0])  # noqa: E731
        return draw() if n is None else [draw() for _ in range(n)]

    def reset(self, seed: int | None = None) -> tuple[str, dict]:
        if seed is not None:
            self.rng = random.Random(f"{seed}-rl")
        self.example = self.sample()
        return self.example["prompt"], {"example": self.example}

    def score(self, completion: str, example: dict) -> float:
        """Reward of ``completion`` for ``example``: 1 for the right label (+ format bonus if it parses)."""
        _, label = parse_answer(completion)
        return float(label == example["label"]) + (self.format_reward if label is not None else 0.0)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        if self.example is None:
            raise LMError("call reset() before step()")
        reward = self.score(action, self.example)
        info = {"label": self.example["label"], "parsed": parse_answer(action)[1], "correct": reward >= 1}
        self.example = None
        return "", reward, True, False, info
