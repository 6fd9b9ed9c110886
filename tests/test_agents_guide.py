"""Guided exploration: the shortest-safe-path guide reaches the goal without touching lava, says so when
no path exists, GuidedDQN uses it only for exploratory actions (guide 0 is SB3's DQN), and the margin step
makes the guide's action the greedy one on the states it was stored for."""

import numpy as np
import pytest
import torch

pytest.importorskip("stable_baselines3")
pytest.importorskip("minigrid")

from minigrid.core.world_object import Lava
from stable_baselines3 import DQN

from reasonlens.agents.config import config_for
from reasonlens.agents.envs import make_env
from reasonlens.agents.guide import GuidedDQN, shortest_path_action
from reasonlens.agents.train import build_model


@pytest.mark.parametrize("env_id", ["MiniGrid-LavaCrossingS9N1-v0", "MiniGrid-LavaCrossingS11N5-v0"])
def test_following_the_guide_reaches_the_goal_and_never_lava(env_id):
    env = make_env(env_id)
    for seed in range(10):
        env.reset(seed=seed)
        grid_env, steps, done = env.unwrapped, 0, False
        while not done:
            action = shortest_path_action(grid_env)
            _, reward, terminated, truncated, _ = env.step(action)
            cell = grid_env.grid.get(*grid_env.agent_pos)
            assert cell is None or cell.type != "lava"
            done, steps = terminated or truncated, steps + 1
        assert reward > 0 and steps < 4 * grid_env.width, (seed, steps)


def test_the_guide_returns_none_when_lava_cuts_the_goal_off():
    env = make_env("MiniGrid-LavaCrossingS9N1-v0")
    env.reset(seed=0)
    grid_env = env.unwrapped
    assert shortest_path_action(grid_env) is not None
    goal_x, goal_y = next(
        (x, y) for x in range(9) for y in range(9) if (c := grid_env.grid.get(x, y)) and c.type == "goal"
    )
    for x, y in ((goal_x - 1, goal_y), (goal_x, goal_y - 1)):  # the goal sits in the corner: two neighbours
        grid_env.grid.set(x, y, Lava())
    assert shortest_path_action(grid_env) is None


def test_guided_dqn_explores_with_the_guide_and_acts_greedily_otherwise():
    config = config_for("MiniGrid-LavaCrossingS11N5-v0", n_envs=4, exploration_guide=1.0)
    model = build_model(config)
    assert isinstance(model, GuidedDQN) and model.guide == 1.0
    observation = model.env.reset()
    guided = [shortest_path_action(env.unwrapped) for env in model.env.envs]
    model.exploration_rate = 1.0  # always explore: every action is the guide's
    assert model.predict(observation)[0].tolist() == guided
    model.exploration_rate = 0.0  # never explore: the greedy actions
    greedy = model.q_net(model.policy.obs_to_tensor(observation)[0]).argmax(-1).numpy()
    assert np.array_equal(model.predict(observation)[0], greedy)
    assert np.array_equal(model.predict(observation, deterministic=True)[0], greedy)
    assert type(build_model(config_for("MiniGrid-LavaCrossingS9N1-v0"))) is DQN  # no guide: SB3's DQN


def test_the_margin_step_teaches_the_guide_action(monkeypatch):
    model = build_model(config_for("MiniGrid-LavaCrossingS9N1-v0", n_envs=2, guide_margin=1.0))
    monkeypatch.setattr(DQN, "train", lambda self, gradient_steps, batch_size=100: None)  # the margin step alone
    observation = model.env.reset()[:1].astype(np.float32)  # (1, 147)
    q_values = model.q_net(torch.as_tensor(observation))[0]
    wanted = int(q_values.argmin())  # the action the untrained network likes least
    for _ in range(64):
        model.store_label(observation[0], wanted)
    model.train(gradient_steps=300, batch_size=32)
    q_values = model.q_net(torch.as_tensor(observation))[0].detach()
    others = torch.cat([q_values[:wanted], q_values[wanted + 1 :]])
    assert int(q_values.argmax()) == wanted and q_values[wanted] - others.max() > 0.5


def test_labels_are_collected_while_training_and_not_saved(tmp_path):
    from reasonlens.agents.model import save_model

    model = build_model(config_for("MiniGrid-Empty-5x5-v0", steps=400, learning_starts=100, guide_margin=1.0))
    model.learn(total_timesteps=400)
    assert model.labels_seen > 0
    save_model(model, tmp_path)
    assert (tmp_path / "agent.zip").stat().st_size < 2**20  # the stored labels stay out of the zip
