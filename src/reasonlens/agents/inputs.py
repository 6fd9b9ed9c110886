"""Input files for the neuron-patching tools, and clean/corrupted pairs made from environment states.

**File format** (the seed tools'): a JSON object ``{input_id: {"input": [147 numbers], ...}}`` (a bare
list instead of the object is accepted too). Input ids are ``<env>-<seed>-<x>,<y>,<direction>-<index>``,
e.g. ``MiniGrid-LavaCrossingS11N5-v0-81110-6,4,0-0763``; the other fields record the state
(``env_id``, ``seed``, ``agent_pos``, ``agent_dir``, ``edits``) and, for corrupted inputs, the
``corruption`` and what it changed, so every input can be rebuilt with :func:`reasonlens.agents.envs.observe`.

**States.** ``states="visited"`` takes the states the agent's own greedy policy visits from reset seeds
``seed, seed+1, ...`` (at most ``per_episode`` of them per episode, chosen at random) — the inputs the
agent actually meets; ``"random"`` takes a random free cell and direction per seed.

**Corruptions** — the same state with one causal change:

- ``lava_into_path``: the free cell straight ahead of the agent becomes lava; the lava tile is *moved*
  there from elsewhere (the one farthest from the agent, out of view when possible), so the grid keeps
  its number of lava cells. Not applicable when the cell ahead is not free floor, or the map has no lava.
- ``goal_moved``: the goal moves to another free cell (chosen at random) such that the view changes.
- ``agent_turned``: the agent faces 90° to the right (its view rotates; the grid is unchanged).

A pair is kept only if the two observations differ, and — with ``require_action_change`` (default) —
only if the agent's greedy action differs between them, so that patching has something to restore.
Clean and corrupted files hold the same ids: the patching tools pair inputs by id.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from reasonlens.agents.agent import INPUTS_DIR, Agent
from reasonlens.agents.envs import (
    DIRECTION_VECTORS,
    State,
    apply_state,
    cells_of,
    flat_observation,
    free_cells,
    make_env,
    reset_grid,
)
from reasonlens.agents.errors import AgentError
from reasonlens.utils.io import write_json
from reasonlens.utils.paths import check_file_name

CORRUPTIONS = ("lava_into_path", "goal_moved", "agent_turned")
STATE_SOURCES = ("visited", "random")


def load_inputs(path: str | os.PathLike, obs_dim: int | None = None) -> tuple[list[str], torch.Tensor, dict]:
    """(ids in file order, observations as a float tensor, the raw entries) of an input file, checked."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise AgentError(f"input file not found: {path}") from None
    except json.JSONDecodeError as err:
        raise AgentError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(data, dict) or not data:
        raise AgentError(f"{path} must be a non-empty JSON object {{input_id: {{'input': [...]}}}}")
    ids, rows = [], []
    for input_id, entry in data.items():
        vector = entry.get("input") if isinstance(entry, dict) else entry
        if not isinstance(vector, list) or not all(isinstance(v, (int, float)) for v in vector):
            raise AgentError(f"{path}: input {input_id!r} has no numeric 'input' list")
        if obs_dim is not None and len(vector) != obs_dim:
            raise AgentError(f"{path}: input {input_id!r} has {len(vector)} values but the agent observes {obs_dim}")
        ids.append(input_id)
        rows.append(vector)
    return ids, torch.tensor(rows, dtype=torch.float32), data


def load_input_pairs(
    agent: Agent, clean: str, corrupted: str, wanted: Sequence[str] | None = None
) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """(ids, clean observations, corrupted observations) of two input files found for ``agent`` (paths or
    names in its inputs folder), restricted to ``wanted`` ids; the two files must hold the same ids."""
    loaded = []
    for name in (clean, corrupted):
        path = agent.resolve_input(name)
        ids, observations, _ = load_inputs(path, agent.obs_dim)
        chosen = select_ids(ids, wanted, str(path))
        loaded.append((chosen, observations[[ids.index(i) for i in chosen]]))
    (clean_ids, clean_obs), (corrupted_ids, corrupted_obs) = loaded
    if clean_ids != corrupted_ids:
        raise AgentError(f"{clean} and {corrupted} must hold the same ids in the same order: inputs are paired by id")
    return clean_ids, clean_obs, corrupted_obs


def select_ids(ids: Sequence[str], wanted: Sequence[str] | None, where: str) -> list[str]:
    """``wanted`` (all ids if None), each checked to be present."""
    if wanted is None:
        return list(ids)
    present = set(ids)
    missing = [i for i in wanted if i not in present]
    if missing:
        sample = ", ".join(list(ids)[:3])
        raise AgentError(f"input id(s) not in {where}: {', '.join(missing)} (it has {len(ids)} ids, e.g. {sample})")
    return list(wanted)


def _ahead(state: State) -> tuple[int, int]:
    dx, dy = DIRECTION_VECTORS[state.direction]
    return state.x + dx, state.y + dy


def corrupt(grid_env, state: State, kind: str, rng: np.random.Generator) -> tuple[State, dict] | None:
    """The corrupted state and a record of the change, or None where ``kind`` does not apply.
    ``grid_env`` must be in ``state`` (it is only read)."""
    if kind == "agent_turned":
        turned = State(state.env_id, state.seed, state.x, state.y, (state.direction + 1) % 4, state.edits)
        return turned, {"agent_dir": [state.direction, turned.direction]}
    if kind == "lava_into_path":
        ax, ay = _ahead(state)
        if grid_env.grid.get(ax, ay) is not None:
            return None
        lava = cells_of(grid_env, "lava")
        if not lava:  # nothing to move: adding lava would change the number of lava cells
            return None
        out_of_view = [c for c in lava if not grid_env.in_view(*c)]
        moved_from = max(out_of_view or lava, key=lambda c: abs(c[0] - state.x) + abs(c[1] - state.y))
        edits = (*state.edits, (moved_from[0], moved_from[1], "empty"), (ax, ay, "lava"))
        changed = State(state.env_id, state.seed, state.x, state.y, state.direction, edits)
        return changed, {"lava_to": [ax, ay], "lava_from": list(moved_from)}
    if kind == "goal_moved":
        goals = cells_of(grid_env, "goal")
        if not goals:
            return None
        gx, gy = goals[0]
        candidates = [c for c in free_cells(grid_env) if c != (state.x, state.y)]
        visible = grid_env.in_view(gx, gy)
        candidates = [c for c in candidates if visible or grid_env.in_view(*c)]
        if not candidates:
            return None
        nx, ny = candidates[rng.integers(len(candidates))]
        edits = (*state.edits, (gx, gy, "empty"), (nx, ny, "goal"))
        changed = State(state.env_id, state.seed, state.x, state.y, state.direction, edits)
        return changed, {"goal_from": [gx, gy], "goal_to": [nx, ny]}
    raise AgentError(f"unknown corruption {kind!r}; allowed: {', '.join(CORRUPTIONS)}")


def _visited_states(agent: Agent, env, seed: int, per_episode: int, rng) -> list[State]:
    """Greedy rollout from reset ``seed``; up to ``per_episode`` distinct visited states."""
    obs, _ = env.reset(seed=seed)
    grid_env = env.unwrapped
    states, done = [], False
    while not done:
        states.append(
            State(
                agent.config.env_id,
                seed,
                int(grid_env.agent_pos[0]),
                int(grid_env.agent_pos[1]),
                int(grid_env.agent_dir),
            )
        )
        action = int(agent.q_values(torch.as_tensor(obs)[None]).argmax())
        obs, _, terminated, truncated, _ = env.step(action)
        done = terminated or truncated
    states = list(dict.fromkeys(states))
    picks = rng.permutation(len(states))[:per_episode]
    return [states[i] for i in sorted(picks)]


def _random_state(env, env_id: str, seed: int, rng) -> State:
    grid_env = reset_grid(env, seed)
    cells = free_cells(grid_env)
    x, y = cells[rng.integers(len(cells))]
    return State(env_id, seed, int(x), int(y), int(rng.integers(4)))


def _entry(state: State, observation: np.ndarray, action: int, **extra) -> dict:
    return {"input": observation.astype(float).tolist(), **state.describe(), "action": action, **extra}


def make_input_pairs(
    agent: Agent,
    corruption: str,
    n: int,
    seed: int = 0,
    states: str = "visited",
    per_episode: int = 4,
    require_action_change: bool = True,
    max_seeds: int | None = None,
) -> tuple[dict, dict]:
    """``n`` clean/corrupted pairs (two dicts in the input-file format, same ids); see the module docstring."""
    if corruption not in CORRUPTIONS:
        raise AgentError(f"unknown corruption {corruption!r}; allowed: {', '.join(CORRUPTIONS)}")
    if n < 1:
        raise AgentError(f"--n must be >= 1 (input pairs to make), got {n}")
    if states not in STATE_SOURCES:
        raise AgentError(f"unknown state source {states!r}; allowed: {', '.join(STATE_SOURCES)}")
    max_seeds = max_seeds or max(1_000, 50 * n)
    rng = np.random.default_rng(seed)
    config = agent.require_env("making input pairs")
    env = make_env(config.env_id, config.actions)
    clean, corrupted, seen = {}, {}, set()
    for env_seed in range(seed, seed + max_seeds):
        if len(clean) >= n:
            break
        if states == "visited":
            candidates = _visited_states(agent, env, env_seed, per_episode, rng)
        else:
            candidates = [_random_state(env, agent.config.env_id, env_seed, rng)]
        for state in candidates:
            if len(clean) >= n or state in seen:
                continue
            seen.add(state)
            grid_env = apply_state(env, state)
            clean_obs = flat_observation(grid_env)
            result = corrupt(grid_env, state, corruption, rng)
            if result is None:
                continue
            changed, record = result
            corrupted_obs = flat_observation(apply_state(env, changed))
            if np.array_equal(clean_obs, corrupted_obs):
                continue
            actions = agent.q_values(torch.as_tensor(np.stack([clean_obs, corrupted_obs]))).argmax(-1).tolist()
            if require_action_change and actions[0] == actions[1]:
                continue
            input_id = state.input_id(len(clean))
            clean[input_id] = _entry(state, clean_obs, actions[0], corruption=None)
            corrupted[input_id] = _entry(changed, corrupted_obs, actions[1], corruption=corruption, change=record)
    env.close()
    if len(clean) < n:
        raise AgentError(
            f"found only {len(clean)} of {n} {corruption} pairs in {max_seeds} episodes; ask for fewer, "
            "allow unchanged actions (--keep-same-action) or use another corruption"
        )
    return clean, corrupted


def write_inputs(data: dict, path: str | os.PathLike) -> Path:
    write_json(path, data)
    return Path(path)


def input_file_names(prefix: str = "") -> tuple[str, str]:
    """``<prefix>clean_inputs.json`` and ``<prefix>corrupted_inputs.json``, checked to stay file names (a
    prefix with ``/`` or ``..`` would write outside the agent's folder)."""
    return tuple(check_file_name(f"{prefix}{kind}_inputs.json", "--prefix") for kind in ("clean", "corrupted"))


def write_input_pairs(agent: Agent, clean: dict, corrupted: dict, prefix: str = "") -> tuple[Path, Path]:
    """Write :func:`input_file_names` into the agent's ``activation_inputs/``."""
    clean_name, corrupted_name = input_file_names(prefix)
    folder = agent.path / INPUTS_DIR
    return write_inputs(clean, folder / clean_name), write_inputs(corrupted, folder / corrupted_name)
