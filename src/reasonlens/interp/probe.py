"""Linear probes on cached activations, in plain torch: multinomial logistic regression (L-BFGS,
full batch) for class labels, closed-form ridge regression for continuous targets, each reported with
the baselines that make its score readable (Hewitt & Liang 2019 style; see :class:`ProbeResult`).
:func:`probe_sweep` runs one probe per (site, label) pair and returns flat rows for per-layer tables.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from reasonlens.interp.errors import InterpError

TASKS = ("classification", "regression")
N_RANDOM_DIRECTIONS = 8


@dataclass
class ProbeResult:
    """Scores are accuracy (classification) or R² (regression), on features standardised with the
    training split's statistics. The baselines:

    - ``control_score``: the same probe trained on *shuffled* training labels, scored on the real test
      labels. A probe that memorises rather than reads the activations scores as well here.
    - ``random_direction_score``: a probe on ``k = min(8, d)`` random Gaussian directions of the
      standardised activations; what a low-dimensional view that was not looked for already gives.
    - ``majority_baseline``: predicting the most frequent training class (classification) or the
      training mean (regression, its R² on the test split: at most about 0).

    ``selectivity = test_score - control_score``."""

    task: str
    n_train: int
    n_test: int
    d: int
    train_score: float
    test_score: float
    control_score: float
    random_direction_score: float
    majority_baseline: float
    selectivity: float
    n_classes: int | None = None
    weight: torch.Tensor | None = field(default=None, repr=False)  # (classes, d) or (d,), on raw features
    bias: torch.Tensor | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        """The scalar fields (JSON-ready); the weights are left out."""
        data = asdict(self)
        data.pop("weight")
        data.pop("bias")
        return data


# -- validation and splits ----------------------------------------------------------------------


def _check_inputs(features, labels, task: str, test_fraction: float, l2: float) -> tuple[torch.Tensor, torch.Tensor]:
    if task not in TASKS:
        raise InterpError(f"unknown probe task {task!r}; allowed: {list(TASKS)}")
    if not isinstance(features, torch.Tensor) or features.ndim != 2 or not features.is_floating_point():
        got = f"{tuple(features.shape)} {features.dtype}" if isinstance(features, torch.Tensor) else type(features)
        raise InterpError(f"probe features must be a 2-D float tensor (rows, dims); got {got}")
    if not torch.isfinite(features).all():
        raise InterpError("probe features contain NaN or inf")
    labels = torch.as_tensor(labels)
    if labels.ndim != 1 or len(labels) != len(features):
        raise InterpError(
            f"probe labels must be 1-D with one entry per feature row ({len(features)}); "
            f"got shape {tuple(labels.shape)}"
        )
    if not 0.0 < test_fraction < 1.0:
        raise InterpError(f"test_fraction must be in (0, 1); got {test_fraction}")
    if l2 < 0:
        raise InterpError(f"l2 must be >= 0; got {l2}")
    if task == "classification":
        if labels.is_floating_point() or labels.is_complex():
            raise InterpError(
                f"classification labels must be integer class ids; got {labels.dtype} "
                "(use task='regression' for continuous targets)"
            )
        if len(torch.unique(labels)) < 2:
            raise InterpError("classification needs at least 2 distinct labels; got 1")
        labels = labels.long()
    else:
        labels = labels.double()
        if not torch.isfinite(labels).all():
            raise InterpError("regression targets contain NaN or inf")
    return features.detach().cpu().double(), labels.cpu()


def _split(n: int, test_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    n_test = max(1, round(n * test_fraction))
    if n - n_test < 2:
        raise InterpError(f"too few rows for a probe: {n} rows leave {n - n_test} for training (need >= 2)")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[n_test:], order[:n_test]


def _standardiser(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean, std = x.mean(0), x.std(0, unbiased=False)
    return mean, torch.where(std > 1e-12, std, torch.ones_like(std))  # constant columns map to 0


# -- the two probes -----------------------------------------------------------------------------


def _fit_logistic(x: torch.Tensor, y: torch.Tensor, n_classes: int, l2: float, steps: int):
    """Multinomial logistic regression on standardised ``x``; minimises mean CE + l2·|W|² (bias free)."""
    weight = torch.zeros(n_classes, x.shape[1], dtype=x.dtype, requires_grad=True)
    bias = torch.zeros(n_classes, dtype=x.dtype, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], lr=1.0, max_iter=steps, history_size=20, line_search_fn="strong_wolfe",
        tolerance_grad=1e-9, tolerance_change=1e-12,
    )  # fmt: skip

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ weight.T + bias, y) + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach(), bias.detach()


def _fit_ridge(x: torch.Tensor, y: torch.Tensor, l2: float):
    """Ridge regression on standardised ``x``: minimises mean (y - xw - b)² + l2·|w|² in closed form."""
    y_mean = y.mean()
    gram = x.T @ x / len(x) + l2 * torch.eye(x.shape[1], dtype=x.dtype)
    rhs = x.T @ (y - y_mean) / len(x)
    weight = torch.linalg.lstsq(gram, rhs.unsqueeze(1)).solution.squeeze(1)  # lstsq: l2=0 may be singular
    return weight, y_mean


def _accuracy(pred: torch.Tensor, y: torch.Tensor) -> float:
    return float((pred == y).double().mean())


def _r2(pred: torch.Tensor, y: torch.Tensor) -> float:
    ss_res = float((y - pred).pow(2).sum())
    ss_tot = float((y - y.mean()).pow(2).sum())
    if ss_tot == 0.0:  # constant target: R² is undefined; exact fits count as 1
        return 1.0 if ss_res == 0.0 else 0.0
    return 1.0 - ss_res / ss_tot


def _fit_and_score(task, x_train, y_train, x_test, y_test, classes, l2, steps):
    """Standardise, fit, and return (train score, test score, weight, bias) with the weights mapped
    back onto the unstandardised features."""
    mean, std = _standardiser(x_train)
    z_train, z_test = (x_train - mean) / std, (x_test - mean) / std
    if task == "classification":
        target = torch.searchsorted(classes, y_train)  # class values -> indices 0..C-1
        weight, bias = _fit_logistic(z_train, target, len(classes), l2, steps)

        def predict(z):  # class values, so a test label never seen in training is always wrong
            return classes[(z @ weight.T + bias).argmax(1)]

        score = _accuracy
    else:
        weight, bias = _fit_ridge(z_train, y_train, l2)

        def predict(z):
            return z @ weight + bias

        score = _r2
    raw_weight = weight / std
    raw_bias = bias - raw_weight @ mean
    return score(predict(z_train), y_train), score(predict(z_test), y_test), raw_weight, raw_bias


def _majority(task: str, y_train: torch.Tensor, y_test: torch.Tensor) -> float:
    if task == "classification":
        values, counts = torch.unique(y_train, return_counts=True)
        return _accuracy(torch.full_like(y_test, int(values[counts.argmax()])), y_test)
    return _r2(torch.full_like(y_test, float(y_train.mean())), y_test)


def train_probe(
    features: torch.Tensor,
    labels: torch.Tensor,
    task: str = "classification",
    test_fraction: float = 0.25,
    l2: float = 1e-3,
    seed: int = 0,
    steps: int = 200,
) -> tuple[ProbeResult, dict[str, torch.Tensor]]:
    """Train a linear probe ``features (N, d) -> labels (N,)`` and its baselines on a seeded random
    split. ``steps`` bounds the L-BFGS iterations (classification only; ridge is closed form).
    Returns the result and ``{"weight", "bias"}`` acting on the raw (unstandardised) features:
    ``logits = features @ weight.T + bias`` (classification, one row per class in ``"classes"``) or
    ``prediction = features @ weight + bias`` (regression). Deterministic given ``seed``."""
    x, y = _check_inputs(features, labels, task, test_fraction, l2)
    train_rows, test_rows = _split(len(x), test_fraction, seed)
    x_train, y_train, x_test, y_test = x[train_rows], y[train_rows], x[test_rows], y[test_rows]

    classes = None
    if task == "classification":
        classes = torch.unique(y_train)
        if len(classes) < 2:
            raise InterpError(
                f"the training split holds only class {int(classes[0])}; use more rows or another seed/test_fraction"
            )

    def fit(x_tr, y_tr, x_te):
        return _fit_and_score(task, x_tr, y_tr, x_te, y_test, classes, l2, steps)

    train_score, test_score, weight, bias = fit(x_train, y_train, x_test)
    generator = torch.Generator().manual_seed(seed + 1)
    shuffled = y_train[torch.randperm(len(y_train), generator=generator)]
    control_score = fit(x_train, shuffled, x_test)[1]
    mean, std = _standardiser(x_train)
    k = min(N_RANDOM_DIRECTIONS, x.shape[1])
    directions = torch.randn(x.shape[1], k, generator=generator, dtype=x.dtype)
    random_score = fit((x_train - mean) / std @ directions, y_train, (x_test - mean) / std @ directions)[1]

    result = ProbeResult(
        task=task,
        n_train=len(train_rows),
        n_test=len(test_rows),
        d=x.shape[1],
        train_score=train_score,
        test_score=test_score,
        control_score=control_score,
        random_direction_score=random_score,
        majority_baseline=_majority(task, y_train, y_test),
        selectivity=test_score - control_score,
        n_classes=None if classes is None else len(classes),
        weight=weight.float(),
        bias=bias.float(),
    )
    weights = {"weight": result.weight, "bias": result.bias}
    if classes is not None:
        weights["classes"] = classes
    return result, weights


def _default_task(labels) -> str:
    return "regression" if torch.as_tensor(labels).is_floating_point() else "classification"


def probe_sweep(
    activations: dict[str, torch.Tensor],
    labels: dict[str, torch.Tensor],
    tasks: dict[str, str] | None = None,
    **kwargs,
) -> list[dict]:
    """One probe per (site, label): rows ``{"site", "label", **ProbeResult.to_dict()}``, sites in the
    order given. ``tasks`` maps label names to "classification" or "regression"; a label missing
    from it is a regression target when its tensor is float, else a classification one. ``kwargs``
    go to :func:`train_probe` (same seed, so every site is probed on the same split)."""
    tasks = dict(tasks or {})
    unknown = sorted(set(tasks) - set(labels))
    if unknown:
        raise InterpError(f"tasks name labels that are not given: {unknown}; labels: {sorted(labels)}")
    rows = []
    for site, feats in activations.items():
        for name, target in labels.items():
            task = tasks.get(name) or _default_task(target)
            try:
                result, _ = train_probe(feats, target, task=task, **kwargs)
            except InterpError as err:
                raise InterpError(f"site {site!r}, label {name!r}: {err}") from err
            rows.append({"site": site, "label": name, **result.to_dict()})
    return rows
