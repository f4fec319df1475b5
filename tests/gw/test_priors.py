"""bilby prior files: checks, deterministic draws, constraints."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from gwnpe.errors import PriorError
from gwnpe.gw.priors import draw, intrinsic_keys, load_priors, sampled_keys, to_absolute_time

from tests.conftest import REPO

DEFAULT = REPO / "config/priors/default.prior"


def _prior_file(tmp_path, text, base=DEFAULT):
    p = tmp_path / "test.prior"
    p.write_text(base.read_text() + text)
    return p


def test_default_prior_splits_intrinsic_and_extrinsic():
    priors = load_priors(DEFAULT, approximant="IMRPhenomD")
    assert len(sampled_keys(priors)) == 9
    assert intrinsic_keys(priors) == ["chirp_mass", "mass_ratio", "theta_jn", "phase"]


def test_unknown_parameter_is_named(tmp_path):
    with pytest.raises(PriorError, match="eccentricity"):
        load_priors(_prior_file(tmp_path, "eccentricity = Uniform(minimum=0, maximum=0.2)\n"))


def test_inverted_range_is_named(tmp_path):
    text = DEFAULT.read_text().replace("minimum=20.0, maximum=40.0", "minimum=40.0, maximum=20.0")
    p = tmp_path / "inv.prior"
    p.write_text(text)
    with pytest.raises(PriorError) as info:
        load_priors(p)
    assert "chirp_mass" in str(info.value) or "inverted" in str(info.value)


def test_empty_range_is_named(tmp_path):
    text = DEFAULT.read_text().replace("minimum=0.25, maximum=1.0", "minimum=0.5, maximum=0.5")
    p = tmp_path / "empty.prior"
    p.write_text(text)
    with pytest.raises(PriorError, match="mass_ratio"):
        load_priors(p)


def test_missing_required_parameter(tmp_path):
    text = "\n".join(line for line in DEFAULT.read_text().splitlines() if not line.startswith("psi"))
    p = tmp_path / "nopsi.prior"
    p.write_text(text)
    with pytest.raises(PriorError, match="psi"):
        load_priors(p)


def test_missing_file_and_garbage_file(tmp_path):
    with pytest.raises(PriorError, match="does not exist"):
        load_priors(tmp_path / "nope.prior")
    bad = tmp_path / "garbage.prior"
    bad.write_text("chirp_mass = NotAPrior(1, 2)\n")
    with pytest.raises(PriorError, match="garbage.prior"):
        load_priors(bad)


def test_precessing_spins_refused_for_aligned_spin_model():
    with pytest.raises(PriorError, match="aligned-spin"):
        load_priors(REPO / "config/priors/precessing.prior", approximant="IMRPhenomD")
    load_priors(REPO / "config/priors/precessing.prior", approximant="IMRPhenomPv2")


def test_draws_are_deterministic_and_follow_the_prior():
    priors = load_priors(DEFAULT)
    keys = sampled_keys(priors)
    a = draw(priors, keys, 4000, np.random.default_rng(1))
    b = draw(priors, keys, 4000, np.random.default_rng(1))
    for k in keys:
        np.testing.assert_array_equal(a[k], b[k])
    # inverse-CDF draws follow each marginal (fixed seed: deterministic, cannot flake)
    for k in ("chirp_mass", "luminosity_distance", "theta_jn", "dec"):
        assert stats.kstest(a[k], priors[k].cdf).pvalue > 1e-3, k
        assert priors[k].minimum <= a[k].min() and a[k].max() <= priors[k].maximum


def test_constraints_are_honoured():
    priors = load_priors(REPO / "config/priors/precessing.prior", approximant="IMRPhenomPv2")
    s = draw(priors, sampled_keys(priors), 2000, np.random.default_rng(3))
    from bilby.gw.conversion import chirp_mass_and_mass_ratio_to_component_masses

    m1, m2 = chirp_mass_and_mass_ratio_to_component_masses(s["chirp_mass"], s["mass_ratio"])
    assert len(m1) == 2000
    assert m1.min() >= 10 and m1.max() <= 80 and m2.min() >= 10 and m2.max() <= 80


def test_absolute_time_shift():
    priors = load_priors(DEFAULT)
    shifted = to_absolute_time(priors, 1e9)
    assert shifted["geocent_time"].minimum == pytest.approx(1e9 - 0.1)
    assert priors["geocent_time"].minimum == pytest.approx(-0.1)


def test_extrinsic_only_draws_ignore_mass_constraints():
    priors = load_priors(REPO / "config/priors/precessing.prior", approximant="IMRPhenomPv2")
    s = draw(priors, ["ra", "dec", "psi", "luminosity_distance"], 500, np.random.default_rng(0))
    assert len(s["ra"]) == 500 and s["luminosity_distance"].max() <= 1000
