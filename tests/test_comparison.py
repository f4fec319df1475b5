"""Comparison with Bilby: the JSD estimator, importance sampling on problems with known answers, a tiny
bilby + dynesty run checked against an independent evidence, and bad comparison requests."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.stats import norm

from gwnpe.comparison import ComparisonError, comparison_indices
from gwnpe.diagnostics.jsd import js_divergence
from gwnpe.errors import GwnpeError
from gwnpe.inference.likelihood import ImportanceSamplingWarning, importance_weights, warn_if_inefficient

REPO = Path(__file__).resolve().parents[1]


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


def test_comparison_indices_count_list_and_bad_index():
    assert comparison_indices({"injections": 3}, 10) == [0, 1, 2]
    assert comparison_indices({"injections": [7, 2]}, 10) == [2, 7]
    assert comparison_indices({"injections": 0}, 10) == []
    with pytest.raises(ComparisonError, match=r"injection index 12.*0-9.*raise injections.count"):
        comparison_indices({"injections": [1, 12]}, 10)
    with pytest.raises(ComparisonError, match="first 11 injections, but the campaign has 10"):
        comparison_indices({"injections": 11}, 10)


# -- a tiny bilby run ----------------------------------------------------------------------------------

TWO_D_PRIOR = """\
chirp_mass = bilby.gw.prior.UniformInComponentsChirpMass(name='chirp_mass', minimum=25.0, maximum=35.0)
mass_ratio = bilby.gw.prior.UniformInComponentsMassRatio(name='mass_ratio', minimum=0.5, maximum=1.0)
a_1 = 0.0
a_2 = 0.0
tilt_1 = 0.0
tilt_2 = 0.0
phi_12 = 0.0
phi_jl = 0.0
luminosity_distance = 5000.0
theta_jn = 0.4
phase = 1.3
geocent_time = 0.0
ra = 1.0
dec = 0.3
psi = 0.7
"""


@pytest.fixture(scope="module")
def two_d(tmp_path_factory):
    """A 2-parameter injection (chirp mass, mass ratio) in tiny-config noise: injections.h5 of one event."""
    from gwnpe.config import load_config
    from gwnpe.injections import injection_settings, run_injections_stage
    from gwnpe.psd import run_psd_stage

    d = tmp_path_factory.mktemp("two_d")
    cfg = load_config(REPO / "config" / "tiny.yaml")
    (d / "two_d.prior").write_text(TWO_D_PRIOR)
    (d / "inj.json").write_text(json.dumps({"chirp_mass": [29.0], "mass_ratio": [0.8]}))
    cfg["priors"] = str(d / "two_d.prior")
    cfg["injections"]["file"] = str(d / "inj.json")
    cfg["comparison"].update(injections=[0])
    cfg["comparison"]["sampler"].update(nlive=60, naccept=10, dlogz=0.1, max_calls=None, checkpoint_interval=1.0)
    cfg["comparison"]["likelihood"]["relative_binning"] = False
    psds = {}
    for ifo in cfg["detectors"]:
        psds[ifo] = d / f"{ifo}_psd.txt"
        run_psd_stage(ifo, cfg, psds[ifo], d / f"{ifo}_psd.png")
    run_injections_stage(injection_settings(cfg), psds, d / "injections.h5")
    return {"config": cfg, "dir": d, "injections": d / "injections.h5"}


def _prior_importance_sampling(cfg, injections, n=20000, seed=0):
    """Independent answer: prior samples weighted by the exact likelihood (proposal = prior)."""
    from gwnpe.comparison import _injection
    from gwnpe.domain import build_domain
    from gwnpe.inference.likelihood import build_likelihood, log_likelihood_ratios
    from gwnpe.priors import draw, fixed_parameters, load_priors

    priors = load_priors(cfg["priors"])
    inj = _injection(injections, 0)
    like = build_likelihood(build_domain(cfg), inj["strain"], inj["psd"], inj["start_time"],
                            cfg["waveform"]["approximant"], cfg["waveform"]["reference_frequency"])
    theta = draw(priors, ["chirp_mass", "mass_ratio"], n, np.random.default_rng(seed))
    fixed = fixed_parameters(priors)
    fixed["geocent_time"] = fixed["geocent_time"] + cfg["trigger_time"]
    log_l = log_likelihood_ratios(like, theta, fixed)
    return theta, importance_weights(log_l, np.zeros(n), np.zeros(n))


@pytest.mark.slow
def test_tiny_bilby_run_agrees_with_an_independent_evidence_and_posterior(two_d, tmp_path):
    import bilby

    from gwnpe.comparison import comparison_settings, run_bilby_stage

    cfg = two_d["config"]
    out = tmp_path / "bilby" / "injection_0" / "result.hdf5"
    run_bilby_stage(comparison_settings(cfg), two_d["injections"], 0, out, threads=1)
    r = bilby.core.result.read_in_result(str(out))
    post = r.posterior
    assert {"chirp_mass", "mass_ratio", "mass_1", "mass_2", "log_likelihood"} <= set(post)
    for k, v in (("chirp_mass", 29.0), ("mass_ratio", 0.8)):
        lo, hi = np.percentile(post[k], [0.05, 99.95])
        assert lo < v < hi, (k, lo, hi)
    assert r.meta_data["gwnpe"]["injection"] == 0 and r.meta_data["gwnpe"]["sampling_time_s"] > 0
    snr = r.meta_data["gwnpe"]["snr"]["network_optimal"]
    assert 6 < snr < 20
    # the same likelihood integrated by prior importance sampling gives the same evidence and posterior
    theta, ref = _prior_importance_sampling(cfg, two_d["injections"])
    assert ref["ess"] > 100
    sigma = np.hypot(ref["log_evidence_err"], r.log_evidence_err)
    assert abs(ref["log_evidence"] - r.log_bayes_factor) < 3 * sigma + 0.1, (ref["log_evidence"], r.log_bayes_factor, sigma)
    jsd, _ = js_divergence(theta["chirp_mass"], post["chirp_mass"], weights_x=ref["weights"])
    assert jsd < 0.05  # sampling noise of a few hundred dynesty samples is ~0.01; a wrong likelihood gives > 0.3
    # no sampler leftovers pretend to be the result; the checkpoint directory is stamped with the settings
    assert (out.parent / "sampler" / "settings.sha256").is_file()
    assert sorted(p.name for p in out.parent.iterdir()) == ["result.hdf5", "sampler"]


@pytest.mark.slow
def test_killed_bilby_job_resumes_from_its_checkpoint(two_d, tmp_path):
    """SIGKILL after the first checkpoint; the rerun says it resumes and finishes with a result."""
    import bilby

    from gwnpe.comparison import comparison_settings

    cfg = copy.deepcopy(two_d["config"])
    cfg["comparison"]["sampler"].update(nlive=150)
    settings = comparison_settings(cfg)
    out = tmp_path / "injection_0" / "result.hdf5"
    script = tmp_path / "run.py"
    (tmp_path / "settings.json").write_text(json.dumps(settings))
    script.write_text(
        "import json, logging, sys\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "from gwnpe.comparison import run_bilby_stage\n"
        f"run_bilby_stage(json.load(open({str(tmp_path / 'settings.json')!r})), {str(two_d['injections'])!r}, 0, "
        f"{str(out)!r}, threads=1)\n"
    )
    ckpt = out.parent / "sampler" / "dynesty_resume.pickle"
    proc = subprocess.Popen([sys.executable, str(script)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    t0 = time.time()
    while not ckpt.exists() and proc.poll() is None and time.time() - t0 < 120:
        time.sleep(0.2)
    assert ckpt.exists(), "no checkpoint was written"
    time.sleep(0.5)  # let the pickle be complete (bilby writes it through a temporary file)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    res = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "resuming from its checkpoint" in res.stdout + res.stderr
    r = bilby.core.result.read_in_result(str(out))
    assert len(r.posterior) > 50 and r.meta_data["gwnpe"]["resumed"] is True


def test_bad_injection_index_and_missing_result_are_named(two_d, tmp_path):
    from gwnpe.comparison import _read_result, comparison_settings, run_bilby_stage

    with pytest.raises(ComparisonError, match="injection index 5 does not exist.*it has 1"):
        run_bilby_stage(comparison_settings(two_d["config"]), two_d["injections"], 5, tmp_path / "r.hdf5")
    assert not (tmp_path / "r.hdf5").exists()
    with pytest.raises(ComparisonError, match="bilby result .*missing.hdf5' does not exist"):
        _read_result(tmp_path / "missing.hdf5", "bilby")
    bad = tmp_path / "garbage.hdf5"
    bad.write_bytes(b"not a result")
    with pytest.raises(ComparisonError, match="cannot be read.*delete it and rerun"):
        _read_result(bad, "bilby")


def test_too_few_reference_samples_is_a_clear_error():
    import bilby
    import pandas as pd

    from gwnpe.comparison import compare_injection

    ref = bilby.core.result.Result(posterior=pd.DataFrame({"chirp_mass": [30.0, 31.0, 29.5]}),
                                   meta_data={"gwnpe": {"injection": 2}})
    npe = bilby.core.result.Result(posterior=pd.DataFrame({"chirp_mass": np.linspace(28, 32, 100), "weights": 1.0}),
                                   meta_data={"gwnpe": {}})
    with pytest.raises(ComparisonError, match="injection 2 has 3 posterior samples.*comparison.sampler.max_calls"):
        compare_injection(ref, npe, ["chirp_mass"], 0, 0)
