"""Guided exploration, and a margin loss toward the guide: help from a shortest-path planner for DQN.

DQN explores by taking a random action with probability ε. In LavaCrossing with several lava rivers a
random walk almost never reaches the goal (one step into lava ends the episode), so the replay buffer holds
no reward to learn from: the S9N1 recipe stayed at 0% on S11N5 for 550k steps. With ``exploration_guide``
g > 0, an exploratory action is, with probability g, the first action of a shortest path to the goal that
never enters lava (breadth-first search over position × direction, computed from the full grid), and
otherwise a random action as before. The Q-network still learns only from the environment's rewards by
DQN's update (off-policy, so experience from any behaviour is valid); the guide changes which experience
is collected, never the targets, and the greedy policy that is evaluated and saved never consults it.

With ``guide_margin`` w > 0 the Q-network is also taught the guide's action directly, as in DQfD (Hester et
al. 2018, "Deep Q-learning from Demonstrations"): on a quarter of the states the agent visits (its own
greedy ones included, as in DAgger), the guide's action is stored; after each of DQN's updates one more
step lowers w · mean(max_a [Q(s, a) + 0.8·[a ≠ a_guide]] − Q(s, a_guide)), which asks Q(s, a_guide) to
exceed every other action's value by 0.8. An agent trained this way has learned partly by imitation: say
so wherever its circuits are discussed.

Written here because no maintained library offers it: stable-baselines3's DQN draws exploratory actions
from the action space only (``DQN.predict``), so :class:`GuidedDQN` overrides that one method.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch
from stable_baselines3 import DQN

# MiniGrid's navigation actions and directions (0 = +x, 1 = +y, 2 = -x, 3 = -y)
LEFT, RIGHT, FORWARD = 0, 1, 2
STEP = ((1, 0), (0, 1), (-1, 0), (0, -1))
BLOCKED = {"wall", "lava"}  # never stepped into by the guide (doors, keys and boxes are not in these rooms)
MARGIN = 0.8  # DQfD's margin between the guide's action and any other
LABEL_FRACTION = 0.25  # share of visited states whose guide action is stored for the margin loss
LABEL_CAPACITY = 100_000  # stored (observation, guide action) pairs; the oldest are overwritten


def passable(grid_env, x: int, y: int) -> bool:
    cell = grid_env.grid.get(x, y)
    return cell is None or (cell.type not in BLOCKED and cell.can_overlap())


def shortest_path_action(grid_env) -> int | None:
    """The first action (LEFT, RIGHT or FORWARD) of a shortest lava-free path from the agent's position and
    direction to the goal, or None when no such path exists."""
    start = (int(grid_env.agent_pos[0]), int(grid_env.agent_pos[1]), int(grid_env.agent_dir))
    first_action = {start: None}
    queue = deque([start])
    while queue:
        x, y, direction = state = queue.popleft()
        cell = grid_env.grid.get(x, y)
        if cell is not None and cell.type == "goal":
            return first_action[state]
        dx, dy = STEP[direction]
        moves = [(LEFT, (x, y, (direction - 1) % 4)), (RIGHT, (x, y, (direction + 1) % 4))]
        if passable(grid_env, x + dx, y + dy):
            moves.append((FORWARD, (x + dx, y + dy, direction)))
        for action, successor in moves:
            if successor not in first_action:
                first_action[successor] = action if first_action[state] is None else first_action[state]
                queue.append(successor)
    return None


class GuidedDQN(DQN):
    """SB3's DQN whose exploratory actions follow :func:`shortest_path_action` with probability ``guide``
    (per environment and step), and, with ``margin`` > 0, an extra large-margin step toward the guide's
    actions after each update (see the module docstring). ``guide=0, margin=0`` is SB3's DQN exactly."""

    def __init__(self, *args, guide: float = 0.0, margin: float = 0.0, **kwargs):
        self.guide, self.margin = guide, margin
        self.labels_seen = 0
        super().__init__(*args, **kwargs)
        obs_dim = int(np.prod(self.observation_space.shape))
        self.label_obs = np.zeros((LABEL_CAPACITY if margin > 0 else 0, obs_dim), dtype=np.float32)
        self.label_actions = np.zeros(len(self.label_obs), dtype=np.int64)

    def predict(self, observation, state=None, episode_start=None, deterministic=False):
        if deterministic or self.env is None or not self.policy.is_vectorized_observation(observation):
            return super().predict(observation, state, episode_start, deterministic)
        # observation: (n_envs, 147), row i from environment i of self.env
        exploring = np.random.rand() < self.exploration_rate  # DQN's ε-greedy draw, one per call
        if exploring:
            actions = np.array([self.action_space.sample() for _ in range(len(observation))])
        else:
            actions, state = self.policy.predict(observation, state, episode_start, deterministic=True)
        for i, env in enumerate(self.env.envs):
            use = exploring and np.random.rand() < self.guide
            label = self.margin > 0 and np.random.rand() < LABEL_FRACTION
            if use or label:
                guided = shortest_path_action(env.unwrapped)
                if guided is not None and use:
                    actions[i] = guided
                if guided is not None and label:
                    self.store_label(observation[i], guided)
        return actions, state

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "label_obs", "label_actions"]  # training data, not the model

    def store_label(self, observation: np.ndarray, action: int) -> None:
        slot = self.labels_seen % len(self.label_obs)
        self.label_obs[slot], self.label_actions[slot] = observation, action
        self.labels_seen += 1

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        super().train(gradient_steps, batch_size)
        stored = min(self.labels_seen, len(self.label_obs))
        if self.margin == 0 or stored < batch_size:
            return
        for _ in range(gradient_steps):
            rows = np.random.randint(stored, size=batch_size)
            obs = torch.as_tensor(self.label_obs[rows], device=self.device)
            guide_actions = torch.as_tensor(self.label_actions[rows], device=self.device)[:, None]  # (batch, 1)
            q_values = self.q_net(obs)  # (batch, actions)
            margins = torch.full_like(q_values, MARGIN).scatter(1, guide_actions, 0.0)
            gap = (q_values + margins).max(1).values - q_values.gather(1, guide_actions).squeeze(1)
            loss = self.margin * gap.mean()
            self.policy.optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
            self.policy.optimizer.step()
