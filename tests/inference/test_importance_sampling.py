"""Importance sampling: weights, ESS, evidence and its error against exact answers on toys."""

from __future__ import annotations


import numpy as np
import pytest
from scipy.stats import norm


from gwnpe.errors import GwnpeError
from gwnpe.errors import ImportanceSamplingWarning
from gwnpe.inference.importance_sampling import importance_weights, warn_if_inefficient



# -- Jensen-Shannon divergence ------------------------------------------------------------------------


def test_proposal_equal_to_target_gives_efficiency_one_and_the_exact_evidence():
    rng = np.random.default_rng(5)
    x = rng.standard_normal(4000)
    log_z = 3.7
    # L * prior = Z * N(x; 0, 1); proposal q = N(0, 1)
    res = importance_weights(log_z + norm.logpdf(x), np.zeros_like(x), norm.logpdf(x))
    assert res["efficiency"] == pytest.approx(1.0)
    assert res["ess"] == pytest.approx(4000)
    assert res["log_evidence"] == pytest.approx(log_z, abs=1e-12)
    assert res["log_evidence_err"] == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(res["weights"], 1.0)


def test_wider_proposal_is_unbiased_and_its_error_is_honest():
    """Over 200 seeded repetitions the log-evidence scatter matches the quoted error, without bias."""
    log_z = -2.0
    est, errs = [], []
    for seed in range(200):
        x = np.random.default_rng(seed).normal(0, 1.5, 2000)
        r = importance_weights(log_z + norm.logpdf(x), np.zeros_like(x), norm.logpdf(x, 0, 1.5))
        est.append(r["log_evidence"])
        errs.append(r["log_evidence_err"])
        assert 0.3 < r["efficiency"] < 0.9
    est = np.array(est)
    assert abs(np.mean(est) - log_z) < 3 * np.std(est) / np.sqrt(len(est))
    assert np.std(est) == pytest.approx(np.median(errs), rel=0.2)


def test_truncated_proposal_counts_rejected_draws():
    """Samples outside the prior are rejected; passing the number of draws keeps the evidence unbiased."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal(40000)
    keep = x > 0  # prior support: x > 0
    log_z = 1.0
    target = log_z + np.log(2) + norm.logpdf(x[keep])  # Z * half-normal
    r = importance_weights(target, np.zeros(keep.sum()), norm.logpdf(x[keep]), n_drawn=len(x))
    assert r["log_evidence"] == pytest.approx(log_z, abs=3 * r["log_evidence_err"] + 1e-3)
    r_wrong = importance_weights(target, np.zeros(keep.sum()), norm.logpdf(x[keep]))
    assert r_wrong["log_evidence"] - log_z == pytest.approx(np.log(2), abs=0.02)  # what ignoring the truncation costs


def test_narrow_proposal_gives_low_efficiency_and_a_warning():
    rng = np.random.default_rng(7)
    x = rng.normal(0, 0.2, 5000)
    res = importance_weights(norm.logpdf(x, 0, 3), np.zeros_like(x), norm.logpdf(x, 0, 0.2))
    assert res["efficiency"] < 0.01
    with pytest.warns(ImportanceSamplingWarning, match="narrower than the posterior"):
        warn_if_inefficient(res, "injection 3")


def test_no_finite_weight_is_a_clear_error():
    with pytest.raises(GwnpeError, match="no sample has a finite weight"):
        importance_weights(np.full(3, -np.inf), np.zeros(3), np.zeros(3))


# -- which injections ----------------------------------------------------------------------------------
