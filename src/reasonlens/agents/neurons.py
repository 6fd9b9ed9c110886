"""Finding the neurons behind a decision, the four ways the neuron-patching guide describes.

1. :func:`activation_differences` — per unit, |clean − corrupted| per input and its mean over inputs;
   the top units of each input and the ones that differ consistently.
2. :func:`active_to_dead` — units active in clean (value > 0, i.e. passed by the ReLU) and dead in
   corrupted (≤ 0), or the reverse; per input and counted over inputs.
3. :func:`ablation_scan` — zero (or mean) ablate each unit alone; how often the greedy action changes.
4. :func:`narrowing_search` — the systematic exploration: patch the whole layer(s) from clean into
   corrupted, then halves, then a minimal set, keeping the restore rate (the fraction of pairs whose
   patched action equals the clean action) ≥ ``threshold``.

Every evaluation of a set of candidate patches is one batched sweep through the engine (rows = candidate
sets × pairs). Pairs where the agent already acts the same on clean and corrupted are uninformative and
dropped by the search (it reports how many).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from reasonlens.agents.agent import Agent
from reasonlens.agents.errors import AgentError
from reasonlens.agents.experiment import QNetAdapter
from reasonlens.agents.extraction import capture_layers
from reasonlens.interp import ActivationCache, Experiment, Intervention, run_sweep

Unit = tuple[str, int]  # (layer, neuron index)


def _layer_values(activations: dict, layer: str, ids: Sequence[str]) -> np.ndarray:
    missing = [i for i in ids if i not in activations or layer not in activations[i]]
    if missing:
        raise AgentError(f"no {layer} activations for input(s) {', '.join(missing[:5])}")
    return np.stack([np.asarray(activations[i][layer], dtype=np.float64).reshape(-1) for i in ids])


def _common_ids(clean: dict, corrupted: dict) -> list[str]:
    ids = [i for i in clean if i in corrupted]
    if not ids:
        raise AgentError("the clean and corrupted activations share no input id; extract both from paired input files")
    return ids


def activation_differences(clean: dict, corrupted: dict, layer: str, top_k: int = 10) -> dict:
    """``{"mean_abs_difference": [per unit], "top_units": [...], "per_input": {id: [top units]}}``."""
    ids = _common_ids(clean, corrupted)
    diff = np.abs(_layer_values(clean, layer, ids) - _layer_values(corrupted, layer, ids))
    mean = diff.mean(0)
    return {
        "layer": layer,
        "inputs": len(ids),
        "mean_abs_difference": mean.round(6).tolist(),
        "top_units": np.argsort(mean)[::-1][:top_k].tolist(),
        "per_input": {i: np.argsort(d)[::-1][:top_k].tolist() for i, d in zip(ids, diff)},
    }


def active_to_dead(clean: dict, corrupted: dict, layer: str) -> dict:
    """Units active in clean and dead in corrupted (and the reverse), per input and counted over inputs."""
    ids = _common_ids(clean, corrupted)
    active_clean = _layer_values(clean, layer, ids) > 0
    active_corrupted = _layer_values(corrupted, layer, ids) > 0
    killed = active_clean & ~active_corrupted
    revived = ~active_clean & active_corrupted
    order = np.argsort(killed.sum(0))[::-1]
    return {
        "layer": layer,
        "inputs": len(ids),
        "clean_active_corrupted_dead": {i: np.flatnonzero(k).tolist() for i, k in zip(ids, killed)},
        "clean_dead_corrupted_active": {i: np.flatnonzero(r).tolist() for i, r in zip(ids, revived)},
        "killed_count": killed.sum(0).tolist(),
        "most_often_killed": [int(u) for u in order if killed[:, u].any()][:20],
    }


def ablation_scan(
    agent: Agent, observations: torch.Tensor, layer: str, op: str = "zero", chunk_size: int = 8192
) -> dict:
    """Ablate each unit of ``layer`` alone on every observation (one batched sweep); per unit the fraction
    of inputs whose greedy action changes and the mean drop of the baseline action's Q-value."""
    layer = agent.check_layer(layer)
    if op not in ("zero", "mean"):
        raise AgentError(f"ablation op must be 'zero' or 'mean', got {op!r}")
    width = agent.layers()[layer]
    adapter = QNetAdapter(agent, observations)
    n = len(observations)
    experiments = [
        Experiment(target=r, source=None, interventions=(Intervention(site=layer, units=(u,), op=op),))
        for u in range(width)
        for r in range(n)
    ]
    reference = None
    if op == "mean":
        reference = ActivationCache({(layer, 0): capture_layers(agent, observations)[layer]})
    baselines, patched = run_sweep(adapter, experiments, chunk_size=chunk_size, reference=reference)
    base_actions = np.array([baselines[r]["action"] for r in range(n)])
    base_q = np.array([baselines[r]["q_values"] for r in range(n)])
    actions = np.array([p["action"] for p in patched]).reshape(width, n)
    q = np.array([p["q_values"] for p in patched]).reshape(width, n, -1)
    chosen_q = q[:, np.arange(n), base_actions]
    change_rate = (actions != base_actions[None]).mean(1)
    return {
        "layer": layer,
        "op": op,
        "inputs": n,
        "action_change_rate": change_rate.round(6).tolist(),
        "q_drop": (base_q[np.arange(n), base_actions][None] - chosen_q).mean(1).round(6).tolist(),
        "ranking": np.argsort(change_rate, kind="stable")[::-1].tolist(),
    }


@dataclass
class SearchStep:
    stage: str
    size: int
    restore_rate: float
    units: dict = field(default_factory=dict)


@dataclass
class NarrowingResult:
    units: dict  # {layer: [neurons]} — the patch spec in the guide's dict form
    restore_rate: float
    threshold: float
    pairs: int
    pairs_dropped: int
    found: bool
    trace: list[SearchStep]
    whole_layer_rate: float
    sweeps: int = 0
    experiments: int = 0

    @property
    def spec(self) -> str:
        return ";".join(f"{layer}:{','.join(map(str, units))}" for layer, units in self.units.items())

    def to_dict(self) -> dict:
        data = asdict(self)
        data["spec"] = self.spec
        data["size"] = sum(len(u) for u in self.units.values())
        return data


def _as_dict(units: Sequence[Unit]) -> dict:
    out: dict[str, list[int]] = {}
    for layer, unit in sorted(units, key=lambda u: (u[0], u[1])):
        out.setdefault(layer, []).append(unit)
    return out


class _PairSearch:
    """Evaluates candidate unit sets on fixed clean→corrupted pairs; counts sweeps and experiments."""

    def __init__(self, agent: Agent, clean: torch.Tensor, corrupted: torch.Tensor, chunk_size: int):
        self.agent, self.n, self.chunk_size = agent, len(clean), chunk_size
        self.adapter = QNetAdapter(agent, torch.cat([corrupted, clean]))  # targets 0..n-1, sources n..2n-1
        self.clean_actions = agent.q_values(clean).argmax(-1)
        self.sweeps = self.experiments = 0

    def rates(self, candidate_sets: Sequence[Sequence[Unit]]) -> list[float]:
        experiments = []
        for units in candidate_sets:
            interventions = tuple(
                Intervention(site=layer, units=tuple(neurons)) for layer, neurons in _as_dict(units).items()
            )
            experiments += [Experiment(target=r, source=self.n + r, interventions=interventions) for r in range(self.n)]
        _, patched = run_sweep(self.adapter, experiments, chunk_size=self.chunk_size)
        self.sweeps += 1
        self.experiments += len(experiments)
        actions = torch.tensor([p["action"] for p in patched]).reshape(len(candidate_sets), self.n)
        return (actions == self.clean_actions[None]).float().mean(1).tolist()


def informative_pairs(agent: Agent, clean: torch.Tensor, corrupted: torch.Tensor) -> torch.Tensor:
    """Indices of the pairs on which the agent's greedy action differs between clean and corrupted."""
    return (agent.q_values(clean).argmax(-1) != agent.q_values(corrupted).argmax(-1)).nonzero().flatten()


def restore_rates(
    agent: Agent,
    clean: torch.Tensor,
    corrupted: torch.Tensor,
    unit_sets: Sequence[dict[str, list[int]]],
    chunk_size: int = 8192,
) -> tuple[list[float], int]:
    """Patch each unit set ({layer: neurons}) from clean into corrupted on the pairs where the agent acts
    differently, all sets in one batched sweep; (per set, the fraction of those pairs whose patched action
    is the clean one; how many pairs)."""
    informative = informative_pairs(agent, clean, corrupted)
    if len(informative) == 0:
        raise AgentError("the agent takes the same action on every clean and corrupted input: nothing to restore")
    candidates = [[(agent.check_layer(layer), u) for layer, us in units.items() for u in us] for units in unit_sets]
    search = _PairSearch(agent, clean[informative], corrupted[informative], chunk_size)
    return (search.rates(candidates) if candidates else []), len(informative)


def restore_rate(
    agent: Agent, clean: torch.Tensor, corrupted: torch.Tensor, units: dict[str, list[int]], chunk_size: int = 8192
) -> tuple[float, int]:
    """:func:`restore_rates` of one unit set: (its restore rate, how many pairs)."""
    (rate,), pairs = restore_rates(agent, clean, corrupted, [units], chunk_size)
    return rate, pairs


def random_unit_sets(agent: Agent, units: dict[str, list[int]], sets: int, seed: int = 0) -> list[dict[str, list[int]]]:
    """``sets`` random unit sets with as many units per layer as ``units`` (the control for a found set)."""
    generator, widths = np.random.default_rng(seed), agent.layers()
    return [
        {layer: generator.choice(widths[layer], len(us), replace=False).tolist() for layer, us in units.items()}
        for _ in range(sets)
    ]


def random_control(
    agent: Agent,
    clean: torch.Tensor,
    corrupted: torch.Tensor,
    units: dict[str, list[int]],
    sets: int = 20,
    seed: int = 0,
) -> list[float]:
    """Restore rates of :func:`random_unit_sets` of ``units``' sizes (empty when no pair has different actions)."""
    if sets == 0 or len(informative_pairs(agent, clean, corrupted)) == 0:
        return []
    return restore_rates(agent, clean, corrupted, random_unit_sets(agent, units, sets, seed))[0]


def check_unit_set(
    agent: Agent, clean: torch.Tensor, corrupted: torch.Tensor, units: dict[str, list[int]], control_sets: int = 20
) -> dict:
    """A unit set on (typically held-out) pairs: its restore rate, and the mean and largest restore rate of
    ``control_sets`` random sets of the same sizes (one sweep for all)."""
    (rate, *control), pairs = restore_rates(
        agent, clean, corrupted, [units, *random_unit_sets(agent, units, control_sets)]
    )
    return {
        "pairs": pairs,
        "restore_rate": rate,
        "random_sets": control_sets,
        "random_mean": float(np.mean(control)) if control else None,
        "random_max": float(np.max(control)) if control else None,
    }


def narrowing_search(
    agent: Agent,
    clean: torch.Tensor,
    corrupted: torch.Tensor,
    layers: Sequence[str],
    threshold: float = 0.8,
    chunk_size: int = 8192,
) -> NarrowingResult:
    """Whole layer(s) → halves → a small set whose clean→corrupted patch restores the clean action on at
    least ``threshold`` of the pairs (see the module docstring). After halving stops, the units of the
    current set are ranked by how much the restore rate falls without each; the shortest prefix of that
    ranking that reaches the threshold is kept and then pruned one unit at a time while it still does,
    so no single unit of the result can be dropped."""
    if not 0 < threshold <= 1:
        raise AgentError(f"threshold must be in (0, 1], got {threshold}")
    if len(clean) != len(corrupted) or len(clean) == 0:
        raise AgentError(f"need equally many clean and corrupted inputs (got {len(clean)} and {len(corrupted)})")
    layers = [agent.check_layer(layer) for layer in layers]
    widths = agent.layers()
    informative = informative_pairs(agent, clean, corrupted)
    dropped = len(clean) - len(informative)
    if len(informative) == 0:
        raise AgentError("the agent takes the same action on every clean and corrupted input: nothing to restore")
    search = _PairSearch(agent, clean[informative], corrupted[informative], chunk_size)
    current: list[Unit] = [(layer, u) for layer in layers for u in range(widths[layer])]
    (whole,) = search.rates([current])
    trace = [SearchStep("whole layer" if len(layers) == 1 else "whole layers", len(current), whole)]

    def result(units, rate, found):
        return NarrowingResult(
            units=_as_dict(units),
            restore_rate=rate,
            threshold=threshold,
            pairs=len(informative),
            pairs_dropped=dropped,
            found=found,
            trace=trace,
            whole_layer_rate=whole,
            sweeps=search.sweeps,
            experiments=search.experiments,
        )

    if whole < threshold:
        return result(current, whole, False)
    rate = whole
    while len(current) > 1:
        half = len(current) // 2
        halves = [current[:half], current[half:]]
        rates = search.rates(halves)
        best = int(np.argmax(rates))
        trace.append(SearchStep("halves", len(halves[best]), rates[best]))
        if rates[best] < threshold:
            break
        current, rate = halves[best], rates[best]
    if len(current) > 1:
        without = search.rates([[u for u in current if u != v] for v in current])
        ranked = [current[i] for i in np.argsort(without, kind="stable")]
        prefix_rates = search.rates([ranked[: k + 1] for k in range(len(ranked))])
        k = (
            next(k for k, r in enumerate(prefix_rates) if r >= threshold)
            if max(prefix_rates) >= threshold
            else len(ranked) - 1
        )
        current, rate = ranked[: k + 1], prefix_rates[k]
        trace.append(SearchStep("ranked prefix", len(current), rate))
    while len(current) > 1:
        without = search.rates([[u for u in current if u != v] for v in current])
        best = int(np.argmax(without))
        if without[best] < threshold:
            break
        current, rate = [u for u in current if u != current[best]], without[best]
        trace.append(SearchStep("prune", len(current), rate))
    trace[-1].units = _as_dict(current)
    return result(current, rate, rate >= threshold)
