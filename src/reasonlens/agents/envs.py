"""MiniGrid environments as the agents see them, and observations of chosen states.

An agent observes the egocentric 7×7 partial view (``ImgObsWrapper``) flattened to a 147-vector
(``FlattenObservation``): cell (i, j) of the view holds (object, colour, state) at indices
``3·(7·i + j) + {0, 1, 2}``. ``actions="navigation"`` keeps MiniGrid's first three actions (turn left,
turn right, forward), which are all a LavaCrossing or Empty task needs; ``"all"`` keeps the seven.

A **state** is (env id, reset seed, agent x, y, direction) plus optional grid edits. LavaCrossing and
Empty grids never change during an episode, so these fields fully determine the observation:
:func:`observe` rebuilds it by resetting with the seed, applying the edits and placing the agent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import minigrid  # noqa: F401  (registers the MiniGrid-* ids with gymnasium)
import numpy as np
from gymnasium.wrappers import FlattenObservation
from minigrid.core.world_object import Goal, Lava
from minigrid.wrappers import ImgObsWrapper

from reasonlens.agents.errors import AgentError

ACTION_SETS = {"navigation": 3, "all": 7}
DIRECTION_VECTORS = ((1, 0), (0, 1), (-1, 0), (0, -1))  # MiniGrid: 0 faces +x (right), 1 faces +y (down), ...
EDIT_OBJECTS = {"lava": Lava, "goal": Goal, "empty": None}


class NavigationActions(gym.ActionWrapper):
    """Restrict the action space to MiniGrid's first ``n`` actions (their indices are unchanged)."""

    def __init__(self, env: gym.Env, n: int):
        super().__init__(env)
        self.action_space = gym.spaces.Discrete(n)

    def action(self, action):
        return int(action)


def check_env_id(env_id: str) -> None:
    """Only MiniGrid grid worlds: the agents read their 7×7×3 egocentric view (other gymnasium ids exist
    but have other observations)."""
    if env_id not in gym.registry or not env_id.startswith("MiniGrid-"):
        known = sorted(k for k in gym.registry if k.startswith("MiniGrid-"))
        what = "unknown environment" if env_id not in gym.registry else "not a MiniGrid environment"
        raise AgentError(f"{what} {env_id!r}; MiniGrid ids include: {', '.join(known[:40])} ...")


def make_env(env_id: str, actions: str = "navigation", render_mode: str | None = None) -> gym.Env:
    """The wrapped environment: flat 147-vector observations and the chosen action set."""
    check_env_id(env_id)
    if actions not in ACTION_SETS:
        raise AgentError(f"unknown action set {actions!r}; allowed: {', '.join(ACTION_SETS)}")
    env = gym.make(env_id, render_mode=render_mode)
    if ACTION_SETS[actions] < env.action_space.n:
        env = NavigationActions(env, ACTION_SETS[actions])
    return FlattenObservation(ImgObsWrapper(env))


@dataclass(frozen=True)
class State:
    """Everything that determines an observation: see the module docstring. ``edits`` are
    ``(x, y, object)`` with object one of ``lava``, ``goal``, ``empty``, applied after the reset."""

    env_id: str
    seed: int
    x: int
    y: int
    direction: int
    edits: tuple[tuple[int, int, str], ...] = field(default=())

    def input_id(self, index: int) -> str:
        """The seed guide's id: ``<env>-<seed>-<x>,<y>,<direction>-<index:04d>``."""
        return f"{self.env_id}-{self.seed}-{self.x},{self.y},{self.direction}-{index:04d}"

    def describe(self) -> dict:
        return {
            "env_id": self.env_id,
            "seed": self.seed,
            "agent_pos": [self.x, self.y],
            "agent_dir": self.direction,
            "edits": [list(e) for e in self.edits],
        }


def reset_grid(env: gym.Env, seed: int):
    """Reset ``env`` with ``seed`` and return its unwrapped MiniGrid env."""
    env.reset(seed=seed)
    return env.unwrapped


def apply_state(env: gym.Env, state: State):
    """Put ``env`` into ``state`` (reset with its seed, apply edits, place the agent); return the unwrapped env."""
    grid_env = reset_grid(env, state.seed)
    for x, y, name in state.edits:
        if name not in EDIT_OBJECTS:
            raise AgentError(f"unknown grid edit object {name!r}; allowed: {', '.join(EDIT_OBJECTS)}")
        obj = EDIT_OBJECTS[name]
        grid_env.grid.set(x, y, obj() if obj is not None else None)
    if not (0 <= state.x < grid_env.width and 0 <= state.y < grid_env.height) or state.direction not in range(4):
        raise AgentError(f"agent position/direction {(state.x, state.y, state.direction)} is outside the grid")
    cell = grid_env.grid.get(state.x, state.y)
    if cell is not None and not (cell.can_overlap() and cell.type != "lava"):
        raise AgentError(f"the agent cannot stand on ({state.x}, {state.y}): it holds {cell.type}")
    grid_env.agent_pos = (state.x, state.y)
    grid_env.agent_dir = state.direction
    return grid_env


def flat_observation(grid_env) -> np.ndarray:
    """The 147-vector the agent sees in the unwrapped env's current state (same as the wrappers give)."""
    return grid_env.gen_obs()["image"].reshape(-1).astype(np.float32)


def observe(state: State, env: gym.Env | None = None) -> np.ndarray:
    env = env if env is not None else make_env(state.env_id)
    return flat_observation(apply_state(env, state))


def free_cells(grid_env) -> list[tuple[int, int]]:
    """Cells an agent may stand on (empty floor)."""
    return [(x, y) for x in range(grid_env.width) for y in range(grid_env.height) if grid_env.grid.get(x, y) is None]


def cells_of(grid_env, kind: str) -> list[tuple[int, int]]:
    return [
        (x, y)
        for x in range(grid_env.width)
        for y in range(grid_env.height)
        if (c := grid_env.grid.get(x, y)) is not None and c.type == kind
    ]
