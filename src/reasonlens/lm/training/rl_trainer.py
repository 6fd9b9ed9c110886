"""RL fine-tuning from an SFT checkpoint with trl's **GRPO**, rewarded by the text game environment.

Why GRPO: the installed trl (1.x) has no ``PPOTrainer`` any more; its online trainers are GRPO and RLOO.
GRPO samples a group of answers per prompt and uses the group's mean reward as the baseline, so it needs
no value head — a good fit for a one-step game with a 0/1 reward (Chu et al. 2025's "RL generalises"
result uses a PPO-style outcome reward; GRPO is the standard value-free variant of it).

Prompts are drawn from a configurable ID/OOD mix. Logged per run directory::

    <output_dir>/final/             model + tokenizer
    <output_dir>/metrics.jsonl      trl's log (reward, KL, loss, ...) and reward per distribution
    <output_dir>/rl_curve.jsonl     greedy success on every evaluation split every ``eval_every`` steps
    <output_dir>/evaluation.json    the standard evaluation of the final model
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from datasets import Dataset
from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from reasonlens.lm.config.task_config import TaskConfig
from reasonlens.lm.config.training_config import RLConfig
from reasonlens.lm.envs.text_game_env import TextGameEnv
from reasonlens.lm.models.lm_loader import check_checkpoint, load_tokenizer, save_checkpoint
from reasonlens.lm.models.policy_wrappers import GPT2MaskPositions, Policy, as_plain_gpt2, completion_budget
from reasonlens.lm.tasks.dataset import build_sft_datasets
from reasonlens.lm.tasks.formatting import check_length
from reasonlens.lm.training.evaluation import evaluate_checkpoint, evaluate_split, evaluation_splits
from reasonlens.utils.device import resolve_device
from reasonlens.utils.io import append_jsonl, write_yaml


class GameReward:
    """trl reward function: the environment's score per completion; remembers rewards per distribution
    until the next log."""

    __name__ = "game_reward"

    def __init__(self, env: TextGameEnv):
        self.env = env
        self.pending: dict[str, list[float]] = defaultdict(list)

    def __call__(self, prompts, completions, label, total, distribution, **kwargs) -> list[float]:
        rewards = []
        for completion, lab, tot, dist in zip(completions, label, total, distribution):
            reward = self.env.score(completion, {"label": lab, "total": tot})
            self.pending[dist].append(reward)
            rewards.append(reward)
        return rewards

    def flush(self) -> dict[str, float]:
        out = {f"reward/{d}": sum(v) / len(v) for d, v in sorted(self.pending.items())}
        self.pending.clear()
        return out


class Curves(TrainerCallback):
    """Logs trl's records with the rewards per distribution to ``metrics.jsonl``, and the greedy success on
    every evaluation split every ``eval_every`` steps (and at the last) to ``rl_curve.jsonl`` — no curve
    when ``eval_every`` exceeds the run's steps."""

    def __init__(self, out: Path, reward: GameReward, policy: Policy, eval_sets: dict, config: RLConfig):
        self.out, self.reward, self.policy, self.eval_sets, self.config = out, reward, policy, eval_sets, config

    def on_log(self, args, state, control, logs=None, **kwargs):
        append_jsonl(self.out / "metrics.jsonl", {"step": state.global_step, **(logs or {}), **self.reward.flush()})

    def on_step_end(self, args, state, control, **kwargs):
        if self.config.eval_every > state.max_steps:
            return  # no curve asked for: the final evaluation is enough
        if state.global_step % self.config.eval_every == 0 or state.global_step == state.max_steps:
            self.evaluate(state.global_step)

    def evaluate(self, step: int):
        model = self.policy.model
        was_training = model.training
        model.eval()
        record = {"step": step}
        for name, split in self.eval_sets.items():
            record[name] = evaluate_split(self.policy, split, self.config.eval_examples)["accuracy"]
        append_jsonl(self.out / "rl_curve.jsonl", record)
        model.train(was_training)


def run_rl(
    task_config: TaskConfig, training_config: RLConfig, init_checkpoint: str | Path, datasets=None
) -> tuple[Path, dict]:
    """GRPO from ``init_checkpoint``; return (path of the RL checkpoint, evaluation metrics)."""
    task_config = TaskConfig.from_dict(task_config)
    config = RLConfig.from_dict(training_config)
    init_checkpoint = check_checkpoint(init_checkpoint)
    env = TextGameEnv(task_config, config.mix, config.format_reward, config.seed)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("metrics.jsonl", "rl_curve.jsonl"):
        (out / name).unlink(missing_ok=True)
    write_yaml(
        out / "config.yaml",
        {
            "task": task_config.model_dump(mode="json"),
            "rl": config.model_dump(mode="json"),
            "init": str(init_checkpoint),
        },
    )
    datasets = datasets if datasets is not None else build_sft_datasets(task_config)
    device = resolve_device(config.device)

    tokenizer = load_tokenizer(init_checkpoint)
    model = GPT2MaskPositions.from_pretrained(str(init_checkpoint), local_files_only=True).to(device)
    columns = ("prompt", "label", "total", "distribution")
    prompts = Dataset.from_list([{k: e[k] for k in columns} for e in env.sample(config.n_prompts)])
    # sampled completions stop at the context's end: the longest prompt + completion must fit n_positions
    longest = max(len(ids) for ids in tokenizer(list(prompts["prompt"]), add_special_tokens=False)["input_ids"])
    wanted = config.max_completion_length or completion_budget(task_config.answer_format)
    check_length(longest + 1, model.config.n_positions, "the longest RL prompt + one answer token")
    completion_length = min(wanted, model.config.n_positions - longest)

    args = GRPOConfig(
        output_dir=str(out / "checkpoints"),
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        num_generations=config.num_generations,
        max_completion_length=completion_length,
        learning_rate=config.learning_rate,
        beta=config.beta,
        temperature=config.temperature,
        logging_steps=config.logging_steps,
        save_strategy="no",
        report_to=[],
        seed=config.seed,
        bf16=device.type == "cuda",
        use_cpu=device.type == "cpu",
        dataloader_num_workers=0,
    )
    reward = GameReward(env)
    eval_sets = {name: datasets[name] for name in evaluation_splits(datasets)}
    policy = Policy(model, tokenizer, model.config.n_positions)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[reward],
        args=args,
        train_dataset=prompts,
        processing_class=tokenizer,
        callbacks=[Curves(out, reward, policy, eval_sets, config)],
    )
    trainer.train()
    final = save_checkpoint(as_plain_gpt2(trainer.model).float().cpu(), tokenizer, out / "final")
    metrics = evaluate_checkpoint(
        final, datasets, max_examples=config.eval_examples, out=out / "evaluation.json", device=str(device)
    )
    return final, metrics
