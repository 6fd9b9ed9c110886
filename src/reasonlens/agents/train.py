"""Training DQN agents with stable-baselines3 and measuring their success rate.

``train_agent(config, out_dir)`` trains SB3's ``DQN`` with ``MlpPolicy`` (``net_arch`` hidden layers, so
the Q-network is ``q_net.0`` Linear → ``q_net.1`` ReLU → ``q_net.2`` … → the action layer) on
``config.n_envs`` parallel copies of the wrapped environment, evaluates the greedy policy every
``eval_every`` steps on fixed evaluation seeds (success = the episode ends at the goal, reward > 0),
and writes an agent directory:

- ``agent.zip`` — the SB3 model (the seed tools' file name): with ``keep_best`` (default) the snapshot
  with the best evaluated success rate (DQN's success rate oscillates during training), else the last;
- ``policy.safetensors`` — the same snapshot's policy weights, which is what :meth:`Agent.load` reads
  (it rebuilds the DQN from ``config.yaml`` and unpickles nothing: :mod:`reasonlens.agents.model`);
- ``config.yaml`` — the resolved :class:`AgentConfig` (``init_from``: the agent whose kept weights the
  training started from, e.g. the previous stage of a curriculum, :mod:`reasonlens.agents.curriculum`);
- ``training_curve.json`` — success rate, mean return and mean length vs training steps;
- ``evaluation.json`` — the saved agent's success rate on ``test_episodes`` episodes whose seeds are
  disjoint from the evaluation seeds used to pick the snapshot (so the number is not selected on).

Every file is written atomically, and ``evaluation.json`` last, so a directory with it is complete.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from stable_baselines3 import DQN
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import Logger

from reasonlens.agents.agent import AGENT_FILE, CONFIG_FILE, CURVE_FILE, EVAL_FILE, Agent
from reasonlens.agents.config import AgentConfig
from reasonlens.agents.envs import check_env_id, make_env
from reasonlens.agents.errors import AgentError
from reasonlens.agents.guide import GuidedDQN
from reasonlens.agents.model import architecture, dqn_kwargs, read_policy_state, save_model
from reasonlens.utils.device import resolve_device
from reasonlens.utils.io import write_json, write_yaml


def greedy_success(
    q_net: torch.nn.Module, config: AgentConfig, episodes: int | None = None, seed: int | None = None
) -> dict:
    """Run the greedy policy of ``q_net`` for ``episodes`` episodes (reset seeds ``seed``, ``seed+1``, ...);
    return success rate, mean return and mean episode length. All episodes step together as one batch."""
    episodes = episodes or config.eval_episodes
    seed = config.eval_seed if seed is None else seed
    envs = [make_env(config.env_id, config.actions) for _ in range(episodes)]
    obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]).astype(np.float32)
    done = np.zeros(episodes, dtype=bool)
    returns = np.zeros(episodes)
    lengths = np.zeros(episodes, dtype=int)
    device = next(q_net.parameters()).device
    while not done.all():
        with torch.inference_mode():
            actions = q_net(torch.as_tensor(obs, device=device)).argmax(-1).cpu().numpy()
        for i in np.flatnonzero(~done):
            observation, reward, terminated, truncated, _ = envs[i].step(int(actions[i]))
            obs[i] = observation
            returns[i] += reward
            lengths[i] += 1
            done[i] = terminated or truncated
    for env in envs:
        env.close()
    return {
        "success_rate": float((returns > 0).mean()),
        "mean_return": float(returns.mean()),
        "mean_length": float(lengths.mean()),
        "episodes": episodes,
        "first_seed": seed,
    }


def _vec_env(config: AgentConfig):
    return make_vec_env(lambda: make_env(config.env_id, config.actions), n_envs=config.n_envs, seed=config.seed)


def build_model(config: AgentConfig) -> DQN:
    """SB3's DQN for ``config`` (:class:`GuidedDQN` with ``exploration_guide``); with ``init_seed`` its initial
    weights are drawn with that seed, and everything after (exploration, replay sampling) with ``seed``."""
    kwargs = dqn_kwargs(config)
    if config.exploration_guide > 0 or config.guide_margin > 0:
        model_class = GuidedDQN
        kwargs = {**kwargs, "guide": config.exploration_guide, "margin": config.guide_margin}
    else:
        model_class = DQN
    if config.init_seed is None:
        return model_class("MlpPolicy", _vec_env(config), **kwargs)
    model = model_class("MlpPolicy", _vec_env(config), **{**kwargs, "seed": config.init_seed})
    model.set_random_seed(config.seed)
    return model


def start_from(model: DQN, agent_dir: Path) -> None:
    """Load another agent's kept policy weights (Q-network and target network) into ``model``; the two
    Q-networks must have the same shape (observation size, hidden widths, actions)."""
    if not agent_dir.is_dir():
        raise AgentError(f"init_from: agent directory not found: {agent_dir}")
    state, source = read_policy_state(agent_dir)
    ours = architecture(model.policy.state_dict(), Path("this config"))
    theirs = architecture(state, source)
    if ours != theirs:
        raise AgentError(
            f"init_from {agent_dir}: its Q-network is {theirs[0]} -> {theirs[1]} -> {theirs[2]}, this config's "
            f"is {ours[0]} -> {ours[1]} -> {ours[2]}; weights carry over only between equal shapes"
        )
    model.policy.load_state_dict(state)


class SuccessCurve(BaseCallback):
    """Every ``eval_every`` steps: the greedy success rate appended to ``curve``, logged, and (with
    ``keep_best``) the model saved to ``out/agent.zip`` and ``out/policy.safetensors`` when it beats the best
    so far."""

    def __init__(self, config: AgentConfig, curve: list, started: float, out: Path, log: Callable[[str], None]):
        super().__init__()
        self.config, self.curve, self.started, self.out, self.log = config, curve, started, out, log
        self.next_eval = config.eval_every
        self.best = -1.0

    def _on_step(self) -> bool:
        config = self.config
        if self.num_timesteps >= self.next_eval:
            self.next_eval += config.eval_every
            point = {"steps": int(self.num_timesteps), "seconds": round(time.perf_counter() - self.started, 1)}
            point.update(greedy_success(self.model.policy.q_net, config))
            self.curve.append(point)
            saved = ""
            if config.keep_best and point["success_rate"] > self.best:
                self.best = point["success_rate"]
                save_model(self.model, self.out)
                saved = "  (saved)"
            self.log(
                f"steps {point['steps']:>9,}  success {point['success_rate']:6.1%}  "
                f"length {point['mean_length']:6.1f}  {point['seconds']:7.1f} s{saved}"
            )
        return True


def train_agent(config: AgentConfig, out_dir: str | os.PathLike, log: Callable[[str], None] = print) -> Agent:
    """Train, evaluate and save an agent directory (see the module docstring); return the loaded agent."""
    out = Path(out_dir)
    resolve_device(config.device)  # an unavailable device stops here, before anything is trained or written
    check_env_id(config.env_id)
    if (out / AGENT_FILE).exists():
        raise FileExistsError(f"{out} already holds an agent ({AGENT_FILE}); choose another --out or delete it")
    torch.manual_seed(config.seed)
    model = build_model(config)
    if config.init_from is not None:  # checked before anything is written
        start_from(model, Path(config.init_from))
    out.mkdir(parents=True, exist_ok=True)
    write_yaml(out / CONFIG_FILE, config.model_dump())
    curve: list[dict] = []
    started = time.perf_counter()
    callback = SuccessCurve(config, curve, started, out, log)
    model.set_logger(Logger(folder=None, output_formats=[]))  # SB3's default makes a SB3-<date> folder in /tmp
    model.learn(total_timesteps=config.steps, callback=callback)
    train_seconds = time.perf_counter() - started
    last = greedy_success(model.policy.q_net, config)
    if not curve or curve[-1]["steps"] != model.num_timesteps:
        curve.append({"steps": int(model.num_timesteps), "seconds": round(train_seconds, 1), **last})
    if not config.keep_best or last["success_rate"] > callback.best:
        save_model(model, out)
    write_json(out / CURVE_FILE, curve)
    agent = Agent.load(out, device=config.device)
    final = greedy_success(agent.q_net, config, config.test_episodes, config.test_seed)
    best = max(curve, key=lambda point: point["success_rate"]) if config.keep_best else curve[-1]
    final.update(
        {
            "saved_snapshot_steps": best["steps"] if config.keep_best else int(model.num_timesteps),
            "steps": int(model.num_timesteps),
            "train_seconds": round(train_seconds, 1),
        }
    )
    write_json(out / EVAL_FILE, final)
    log(f"test success rate {final['success_rate']:.1%} over {final['episodes']} episodes; agent in {out}")
    return agent


def evaluate_agent(agent: Agent, episodes: int | None = None, seed: int | None = None) -> dict:
    """Success rate of a saved agent's greedy policy (also what ``reasonlens agents evaluate`` prints)."""
    config = agent.require_env("evaluating")
    return greedy_success(
        agent.q_net, config, episodes or config.test_episodes, config.test_seed if seed is None else seed
    )
