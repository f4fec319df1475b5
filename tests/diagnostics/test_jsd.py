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


def _bimodal(rng, n, width):
    return rng.choice([-1.0, 1.0], n) + rng.normal(0, width, n)


def _peak_and_edge_mode(rng, n):
    """Like an SNR-5 time posterior: a peak, and 10% of the mass piled against the prior's upper edge (0.1 s)."""
    edge = rng.random(n) < 0.1
    return np.where(edge, 0.1 - np.abs(rng.normal(0, 0.004, n)), rng.normal(0, 0.01, n))


SAME_DISTRIBUTION_CASES = {
    "bimodal, modes +-1 of width 0.15": (lambda rng, n: _bimodal(rng, n, 0.15), None, False),
    "bimodal, modes +-1 of width 0.05": (lambda rng, n: _bimodal(rng, n, 0.05), None, False),
    "peak plus a 10% mode at the prior edge": (_peak_and_edge_mode, (-0.1, 0.1), False),
    "wrapped Gaussian at 0 / 2 pi": (lambda rng, n: np.mod(rng.normal(0, 0.3, n), 2 * np.pi), (0.0, 2 * np.pi), True),
}


@pytest.mark.parametrize("case", list(SAME_DISTRIBUTION_CASES))
def test_two_draws_of_one_distribution_of_very_different_sizes_agree_within_the_floor(case):
    """20 000 NPE-like samples against 432 dynesty-like ones of the same distribution: <= 0.002 nat on average
    (one bandwidth for both sets; per-set bandwidths gave 0.05-0.1 nat here)."""
    draw, bounds, periodic = SAME_DISTRIBUTION_CASES[case]
    rng = np.random.default_rng(11)
    values = [js_divergence(draw(rng, 20000), draw(rng, 432), bounds=bounds, periodic=periodic)[0] for _ in range(40)]
    assert np.mean(values) <= 0.002, (case, np.mean(values))


def test_a_known_small_difference_is_resolved():
    """N(0,1) vs N(0.1,1): 0.00125 nat (mu^2 / 8), well above the estimate for two draws of N(0,1)."""
    rng = np.random.default_rng(12)
    shifted = np.mean([js_divergence(rng.normal(0, 1, 20000), rng.normal(0.1, 1, 20000))[0] for _ in range(5)])
    same = np.mean([js_divergence(rng.normal(0, 1, 20000), rng.normal(0, 1, 20000))[0] for _ in range(5)])
    assert shifted == pytest.approx(0.00125, abs=3e-4)
    assert same < shifted / 5


def test_periodic_parameters_are_wrapped_and_bounded_ones_reflected():
    """A mode straddling 0 = 2 pi is one mode when periodic: a shift of a tenth of its width across the wrap
    gives mu^2 / 8 = 0.00125 nat as on the line; mass against a prior edge is not smeared past it
    (reflection keeps the estimate of two draws of a half-normal at the floor)."""
    rng = np.random.default_rng(13)
    a = np.mod(rng.normal(0, 0.2, 20000), 2 * np.pi)
    b = np.mod(rng.normal(0, 0.2, 20000) + 0.02, 2 * np.pi)
    assert js_divergence(a, b, bounds=(0, 2 * np.pi), periodic=True)[0] == pytest.approx(0.00125, abs=3e-4)
    assert js_divergence(a + 2 * np.pi, b - 2 * np.pi, bounds=(0, 2 * np.pi), periodic=True)[0] == pytest.approx(
        js_divergence(a, b, bounds=(0, 2 * np.pi), periodic=True)[0])
    x, y = np.abs(rng.normal(0, 1, 20000)), np.abs(rng.normal(0, 1, 432))  # half-normal against 0
    reflected = np.mean([js_divergence(x, np.abs(rng.normal(0, 1, 432)), bounds=(0, np.inf))[0] for _ in range(20)])
    assert reflected < 0.002
    with pytest.raises(GwnpeError, match="periodic parameter needs finite bounds"):
        js_divergence(x, y, periodic=True, name="phase")


def test_jsd_bad_inputs_name_the_parameter():
    with pytest.raises(GwnpeError, match="'chirp_mass'.*3 samples but 2 weights"):
        js_divergence([1, 2, 3], [1, 2], weights_x=[1, 1], name="chirp_mass")
    with pytest.raises(GwnpeError, match="'dec': fewer than two"):
        js_divergence([np.nan, 1.0], [1, 2, 3], name="dec")


# -- importance sampling ------------------------------------------------------------------------------
