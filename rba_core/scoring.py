"""Anomaly scores on the per-class map L(x) = sum_q P_q M_q  ([B, K, H, W] -> [B, H, W]).

Higher = more anomalous for every score; ``dim`` is the class axis (1, or -1 for [B, H, W, K]).
With the paper's notation (Eq. 5):

- ``rba``:           RbA(x) = -sum_k tanh(L_k(x))        (rejected by all one-vs-all classifiers)
- ``energy``:        -logsumexp_k L_k(x)                  (free energy, as in the authors' code)
- ``max_logit``:     -max_k L_k(x)
- ``msp``:           -max_k softmax(L(x))_k              (maximum softmax probability)
- ``entropy``:       -sum_k p_k log p_k,  p = softmax(L(x))
- ``neg_logit_sum``: -sum_k L_k(x)
"""
from __future__ import annotations

from typing import Callable

import torch

ScoreFn = Callable[..., torch.Tensor]  # (sem, dim=1) -> [B, H, W]


def rba(sem: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """-sum_k tanh(L_k): in (-K, 0]; an unknown pixel gets ~0, an inlier ~ -tanh(1) or below."""
    return -torch.tanh(sem).sum(dim)


def energy(sem: torch.Tensor, dim: int = 1) -> torch.Tensor:
    return -torch.logsumexp(sem, dim=dim)


def max_logit(sem: torch.Tensor, dim: int = 1) -> torch.Tensor:
    return -sem.max(dim=dim).values


def msp(sem: torch.Tensor, dim: int = 1) -> torch.Tensor:
    return -sem.softmax(dim=dim).max(dim=dim).values


def entropy(sem: torch.Tensor, dim: int = 1) -> torch.Tensor:
    logp = sem.log_softmax(dim=dim)
    return -(logp.exp() * logp).sum(dim)


def neg_logit_sum(sem: torch.Tensor, dim: int = 1) -> torch.Tensor:
    return -sem.sum(dim)


SCORES: dict[str, ScoreFn] = {
    "rba": rba, "energy": energy, "max_logit": max_logit, "msp": msp, "entropy": entropy,
    "neg_logit_sum": neg_logit_sum,
}


def get_score(name: str) -> ScoreFn:
    """Score function by name, with a one-line error listing the known names."""
    try:
        return SCORES[name]
    except KeyError:
        raise ValueError(f"unknown score {name!r} (known: {', '.join(SCORES)})") from None


def parse_scores(spec: str | list[str]) -> list[str]:
    """'rba,energy' or ['rba', 'energy'] -> validated list of score names."""
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if not names:
        raise ValueError("no score given")
    for name in names:
        get_score(name)
    return names
