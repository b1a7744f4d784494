"""Scores on hand-computed per-pixel cases (paper Fig. 4 behaviours)."""
import math

import pytest
import torch

from rba_core.scoring import SCORES, get_score, parse_scores

K = 19


def pixels():
    """Three pixels as columns of L(x) [1, K, 1, 3]: inlier, unknown, boundary."""
    inlier = [0.95] + [0.0] * (K - 1)
    unknown = [0.02] * K
    boundary = [0.5, 0.5] + [0.0] * (K - 2)
    return torch.tensor([inlier, unknown, boundary]).T.reshape(1, K, 1, 3)


def test_rba_values_by_hand():
    s = SCORES["rba"](pixels())[0, 0]
    assert s[0].item() == pytest.approx(-math.tanh(0.95), abs=1e-6)
    assert s[1].item() == pytest.approx(-K * math.tanh(0.02), abs=1e-6)
    assert s[2].item() == pytest.approx(-2 * math.tanh(0.5), abs=1e-6)


def test_rba_boundary_not_above_inlier_and_far_below_unknown():
    inlier, unknown, boundary = SCORES["rba"](pixels())[0, 0].tolist()
    assert boundary <= inlier
    assert unknown - boundary > 0.5  # far below: the unknown is the clear outlier
    assert unknown > inlier


def test_max_logit_puts_boundary_halfway():
    inlier, unknown, boundary = SCORES["max_logit"](pixels())[0, 0].tolist()
    assert (inlier, unknown, boundary) == pytest.approx((-0.95, -0.02, -0.5))
    assert (boundary - inlier) / (unknown - inlier) == pytest.approx(0.45 / 0.93, abs=1e-6)


def test_other_scores_by_hand():
    sem = pixels()
    col = [sem[0, :, 0, i].tolist() for i in range(3)]
    for i, v in enumerate(col):
        lse = math.log(sum(math.exp(x) for x in v))
        p = [math.exp(x - lse) for x in v]
        assert SCORES["energy"](sem)[0, 0, i].item() == pytest.approx(-lse, abs=1e-5)
        assert SCORES["msp"](sem)[0, 0, i].item() == pytest.approx(-max(p), abs=1e-6)
        assert SCORES["entropy"](sem)[0, 0, i].item() == pytest.approx(
            -sum(q * math.log(q) for q in p), abs=1e-5)
        assert SCORES["neg_logit_sum"](sem)[0, 0, i].item() == pytest.approx(-sum(v), abs=1e-5)


def test_every_score_is_highest_on_the_unknown_pixel():
    for name, fn in SCORES.items():
        s = fn(pixels())[0, 0]
        assert s.shape == (3,)
        assert s[1] > s[0], name


def test_score_names_are_validated():
    assert parse_scores("rba, energy") == ["rba", "energy"]
    with pytest.raises(ValueError, match="known: rba"):
        parse_scores("rba,bogus")
    with pytest.raises(ValueError):
        get_score("")
