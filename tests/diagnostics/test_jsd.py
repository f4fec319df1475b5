"""Jensen-Shannon divergence estimator: exact values on Gaussians, bounds, weights, bad inputs."""

from __future__ import annotations


import numpy as np
import pytest
from scipy.integrate import quad
from scipy.stats import norm


from gwnpe.diagnostics.jsd import js_divergence
from gwnpe.errors import GwnpeError



# -- Jensen-Shannon divergence ------------------------------------------------------------------------


def _exact_js_gaussians(mu):
    p, q = norm(0, 1).pdf, norm(mu, 1).pdf

    def f(t):
        m = 0.5 * (p(t) + q(t))
        return 0.5 * p(t) * np.log(p(t) / m) + 0.5 * q(t) * np.log(q(t) / m)

    return quad(f, -12, 12 + mu)[0]


def test_jsd_of_identical_samples_is_zero_and_of_independent_draws_within_its_bias():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(20000)
    assert js_divergence(x, x)[0] == 0.0
    v, err = js_divergence(x, rng.standard_normal(20000), n_bootstrap=30)
    assert 0 <= v < 5e-4 and 0 < err < 5e-4


@pytest.mark.parametrize("mu", [0.2, 0.5, 1.0])
def test_jsd_of_shifted_unit_gaussians(mu):
    """~mu^2/8 nat for small mu; equal to the numerically integrated value within 10% + its bias."""
    rng = np.random.default_rng(2)
    v, err = js_divergence(rng.standard_normal(50000), rng.standard_normal(50000) + mu, n_bootstrap=30)
    exact = _exact_js_gaussians(mu)
    assert v == pytest.approx(exact, rel=0.1, abs=3e-4)
    assert err < 0.1 * exact
    if mu <= 0.5:
        assert v == pytest.approx(mu**2 / 8, rel=0.15)


def test_jsd_is_in_nats_and_bounded_by_ln2():
    rng = np.random.default_rng(3)
    v, _ = js_divergence(rng.normal(0, 1, 5000), rng.normal(100, 1, 5000))
    assert v == pytest.approx(np.log(2), rel=1e-3)


def test_weighted_jsd_uses_the_weights():
    """A wide proposal reweighted to N(0,1) agrees with N(0,1) draws; unweighted it does not."""
    rng = np.random.default_rng(4)
    z = rng.normal(0, 2, 100000)
    w = norm.pdf(z) / norm.pdf(z, 0, 2)
    target = rng.standard_normal(20000)
    assert js_divergence(z, target, weights_x=w)[0] < 1e-3
    assert js_divergence(z, target)[0] > 0.05


def test_jsd_bad_inputs_name_the_parameter():
    with pytest.raises(GwnpeError, match="'chirp_mass'.*3 samples but 2 weights"):
        js_divergence([1, 2, 3], [1, 2], weights_x=[1, 1], name="chirp_mass")
    with pytest.raises(GwnpeError, match="'dec': fewer than two"):
        js_divergence([np.nan, 1.0], [1, 2, 3], name="dec")


# -- importance sampling ------------------------------------------------------------------------------
