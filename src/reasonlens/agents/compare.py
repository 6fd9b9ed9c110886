"""Comparing the units of two agents' Q-networks: which unit of one plays the part of which unit of the other.

Unit order is arbitrary — two networks that compute the same thing may list their units in any order — so
units are matched by what they do: on the same observations, the Pearson correlation of every unit of
agent A's layer with every unit of agent B's, and the one-to-one assignment that maximises the summed
correlation (the Hungarian algorithm, ``scipy.optimize.linear_sum_assignment``). A unit that never varies
on the observations (a dead ReLU input) correlates with nothing (0). With the matching, a unit set found
in A (say, by the narrowing search) is mapped into B's numbering and compared with B's own set.

:func:`compare_circuits` asks both questions of a unit set found in A: is it B's set (Jaccard after
matching), and does it work in B — patched from clean into corrupted in B, by B's matched units and by
the same indices (which only means something for a copy trained from the same initialisation), against
B's own set and random sets of the same size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from reasonlens.agents.agent import Agent
from reasonlens.agents.errors import AgentError
from reasonlens.agents.extraction import capture_layers
from reasonlens.agents.neurons import random_unit_sets, restore_rate, restore_rates


def correlations(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, units_a), (N, units_b) activations on the same N inputs -> (units_a, units_b) Pearson correlations;
    0 wherever a unit does not vary."""
    if a.shape[0] != b.shape[0] or a.shape[0] < 2:
        raise AgentError(f"need the same two or more inputs for both agents (got {a.shape[0]} and {b.shape[0]})")
    a = a - a.mean(0)
    b = b - b.mean(0)
    norm_a, norm_b = np.linalg.norm(a, axis=0), np.linalg.norm(b, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = (a.T @ b) / np.outer(norm_a, norm_b)  # (units_a, units_b)
    return np.nan_to_num(corr, nan=0.0, posinf=0.0, neginf=0.0)


@dataclass
class UnitMatching:
    layer: str
    to_b: list[int]  # unit i of A is unit to_b[i] of B
    correlation: list[float]  # the matched pairs' correlations

    def map_units(self, units: list[int]) -> list[int]:
        """A's unit indices in B's numbering."""
        return sorted(self.to_b[u] for u in units)

    def summary(self) -> dict:
        corr = np.asarray(self.correlation)
        return {
            "layer": self.layer,
            "mean_correlation": round(float(corr.mean()), 4),
            "matched_above_0.9": int((corr > 0.9).sum()),
            "matched_above_0.5": int((corr > 0.5).sum()),
            "units": len(corr),
        }


def match_units(a: np.ndarray, b: np.ndarray, layer: str = "") -> UnitMatching:
    """The one-to-one matching of A's units to B's with the largest summed correlation."""
    if a.shape[1] != b.shape[1]:
        raise AgentError(f"layer {layer}: A has {a.shape[1]} units and B {b.shape[1]}; matching needs equal widths")
    corr = correlations(a, b)
    rows, cols = linear_sum_assignment(-corr)
    to_b = np.empty(a.shape[1], dtype=int)
    to_b[rows] = cols
    return UnitMatching(layer, to_b.tolist(), corr[rows, cols][np.argsort(rows)].round(6).tolist())


def match_agents(agent_a: Agent, agent_b: Agent, observations: torch.Tensor, layers: list[str]) -> dict:
    """{layer: UnitMatching} of two agents' hidden layers on the same observations (values before the ReLU,
    as the guide's extraction records them)."""
    values_a, values_b = capture_layers(agent_a, observations), capture_layers(agent_b, observations)
    matchings = {}
    for layer in layers:
        layer_a, layer_b = agent_a.check_layer(layer), agent_b.check_layer(layer)
        matchings[layer] = match_units(
            np.asarray(values_a[layer_a], dtype=np.float64), np.asarray(values_b[layer_b], dtype=np.float64), layer
        )
    return matchings


def jaccard(first: list[int], second: list[int]) -> float:
    first_set, second_set = set(first), set(second)
    union = first_set | second_set
    return len(first_set & second_set) / len(union) if union else 1.0


def compare_circuits(
    agent_a: Agent,
    agent_b: Agent,
    clean: torch.Tensor,
    corrupted: torch.Tensor,
    units_a: dict[str, list[int]],
    units_b: dict[str, list[int]] | None = None,
    random_sets: int = 20,
    seed: int = 0,
) -> dict:
    """A's unit set (``units_a``, {layer: neurons}, e.g. found by the narrowing search) against agent B, on
    the same clean/corrupted pairs: the unit matching of each layer (on every clean and corrupted input),
    the set in B's numbering and its Jaccard with ``units_b``, and restore rates — A's set in A, in B by
    matched units, in B by the same indices, B's own set, and the mean of ``random_sets`` random sets of
    the same sizes in B (the control)."""
    layers = list(dict.fromkeys([*units_a, *(units_b or {})]))
    matchings = match_agents(agent_a, agent_b, torch.cat([clean, corrupted]), layers)
    mapped = {layer: matchings[layer].map_units(units) for layer, units in units_a.items()}
    a_own, pairs_a = restore_rate(agent_a, clean, corrupted, units_a)
    b_sets = [mapped, units_a, *([] if units_b is None else [units_b])]  # one sweep for every set tried in B
    b_rates, pairs_b = restore_rates(
        agent_b, clean, corrupted, [*b_sets, *random_unit_sets(agent_b, mapped, random_sets, seed)]
    )
    rates = {"a_own": a_own, "b_matched": b_rates[0], "b_same_indices": b_rates[1]}
    if units_b is not None:
        rates["b_own"] = b_rates[2]
    random_rates = b_rates[len(b_sets) :]
    rates["b_random_mean"] = float(np.mean(random_rates)) if random_rates else None
    return {
        "layers": {layer: matchings[layer].summary() for layer in layers},
        "units_a": units_a,
        "units_a_in_b": mapped,
        "units_b": units_b,
        "jaccard": None
        if units_b is None
        else {layer: jaccard(mapped.get(layer, []), units_b.get(layer, [])) for layer in layers},
        "restore_rate": {k: round(v, 4) if v is not None else None for k, v in rates.items()},
        "pairs": {"a": pairs_a, "b": pairs_b},  # the pairs on which each agent acts differently
        "random_sets": random_sets,
    }
