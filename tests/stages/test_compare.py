"""The comparison with Bilby: dynesty reference runs, resuming, NPE+IS results, the compare stage's errors."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from gwnpe.errors import ComparisonError

from gwnpe.stages.workflow import comparison_indices
from gwnpe.diagnostics.jsd import js_divergence
from gwnpe.inference.importance_sampling import importance_weights

from tests.conftest import REPO


# -- Jensen-Shannon divergence ------------------------------------------------------------------------


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
    from gwnpe.stages.workflow import load_config
    from gwnpe.stages.injections import run_injections_stage
    from gwnpe.stages.settings import stage_settings
    from gwnpe.stages.psd import run_psd_stage

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
        run_psd_stage(ifo, cfg, out_psd=psds[ifo], out_plot=d / f"{ifo}_psd.png")
    run_injections_stage(stage_settings(cfg, "injections"), psd_paths=psds, out_path=d / "injections.h5")
    return {"config": cfg, "dir": d, "injections": d / "injections.h5"}


def _prior_importance_sampling(cfg, injections, n=20000, seed=0):
    """Independent answer: prior samples weighted by the exact likelihood (proposal = prior)."""
    from gwnpe.products.injections import load_event
    from gwnpe.gw.domain import build_domain
    from gwnpe.gw.likelihood import build_likelihood, log_likelihood_ratios
    from gwnpe.gw.priors import draw, fixed_parameters, load_priors

    priors = load_priors(cfg["priors"])
    inj = load_event(injections, 0)
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

    from gwnpe.stages.bilby import run_bilby_stage


    cfg = two_d["config"]
    out = tmp_path / "bilby" / "injection_0" / "result.hdf5"
    run_bilby_stage(cfg, injections_path=two_d["injections"], index=0, out_path=out, threads=1)
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


    cfg = copy.deepcopy(two_d["config"])
    cfg["comparison"]["sampler"].update(nlive=150)
    settings = cfg
    out = tmp_path / "injection_0" / "result.hdf5"
    script = tmp_path / "run.py"
    (tmp_path / "settings.json").write_text(json.dumps(settings))
    script.write_text(
        "import json, logging, sys\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "from gwnpe.stages.bilby import run_bilby_stage\n"
        f"run_bilby_stage(json.load(open({str(tmp_path / 'settings.json')!r})), injections_path={str(two_d['injections'])!r}, "
        f"index=0, out_path={str(out)!r}, threads=1)\n"
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
    from gwnpe.stages.bilby import run_bilby_stage
    from gwnpe.stages.compare import _read_result

    with pytest.raises(ComparisonError, match="injection index 5 does not exist.*it has 1"):
        run_bilby_stage(two_d["config"], injections_path=two_d["injections"], index=5, out_path=tmp_path / "r.hdf5")
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

    from gwnpe.diagnostics.comparison import compare_injection

    ref = bilby.core.result.Result(posterior=pd.DataFrame({"chirp_mass": [30.0, 31.0, 29.5]}),
                                   meta_data={"gwnpe": {"injection": 2}})
    npe = bilby.core.result.Result(posterior=pd.DataFrame({"chirp_mass": np.linspace(28, 32, 100), "weights": 1.0}),
                                   meta_data={"gwnpe": {}})
    with pytest.raises(ComparisonError, match=r"injection 2 \(reference run 0\) has 3 posterior samples.*comparison.sampler.max_calls"):
        compare_injection(ref, npe, ["chirp_mass"], 0, 0)


def _result(samples: dict, meta: dict, priors=None):
    import bilby
    import pandas as pd

    return bilby.core.result.Result(posterior=pd.DataFrame(samples), meta_data={"gwnpe": meta}, priors=priors,
                                    log_bayes_factor=10.0, log_evidence_err=0.1, num_likelihood_evaluations=1000)


def test_reference_floor_and_verdicts():
    """Two reference runs of one posterior give the floor; an NPE posterior of the same distribution is
    'indistinguishable', one shifted by a third of its width is not; with one run there is no verdict."""
    from gwnpe.diagnostics.comparison import INDISTINGUISHABLE_MARGIN, compare_injection, jsd_verdict

    assert jsd_verdict(0.003, 0.0015) == "indistinguishable"
    assert jsd_verdict(0.004, 0.0015) == "distinguishable"
    assert jsd_verdict(0.001, float("nan")) == "no floor (one reference run)"
    rng = np.random.default_rng(5)
    meta_b = {"injection": 0, "snr": {"network_optimal": 12.0}, "sampling_time_s": 100.0}
    runs = [_result({"chirp_mass": rng.normal(30, 1, 800)}, {**meta_b, "reference_run": r, "seed": r}) for r in range(2)]
    is_meta = {"npe_time_s": 1.0, "importance_sampling": {"time": 2.0, "log_bayes_factor": 10.0,
                                                          "log_evidence_err": 0.1, "efficiency": 0.5, "ess": 5000,
                                                          "pareto_k": 0.2}}
    same = _result({"chirp_mass": rng.normal(30, 1, 20000), "weights": np.ones(20000)}, is_meta)
    shifted = _result({"chirp_mass": rng.normal(30.35, 1, 20000), "weights": np.ones(20000)}, is_meta)
    c = compare_injection(runs[0], same, ["chirp_mass"], 0, 0, other_runs=runs[1:])
    row = next(r for r in c["jsd"] if r["method"] == "npe_is")
    assert 0 <= row["floor"] < 0.005 and row["verdict"] == "indistinguishable"
    assert row["n_reference"] == 800 and len(c["reference_runs"]) == 2
    c = compare_injection(runs[0], shifted, ["chirp_mass"], 0, 0, other_runs=runs[1:])
    row = next(r for r in c["jsd"] if r["method"] == "npe_is")
    assert row["jsd"] > row["floor"] + INDISTINGUISHABLE_MARGIN and row["verdict"] == "distinguishable"
    c = compare_injection(runs[0], same, ["chirp_mass"], 0, 0)
    assert {r["verdict"] for r in c["jsd"]} == {"no floor (one reference run)"}


FOUR_D_PRIOR = TWO_D_PRIOR.replace(
    "luminosity_distance = 5000.0",
    "luminosity_distance = bilby.gw.prior.UniformSourceFrame(name='luminosity_distance', minimum=3000.0, "
    "maximum=9000.0)").replace("phase = 1.3", "phase = Uniform(name='phase', minimum=0.0, maximum=2 * np.pi, "
                               "boundary='periodic')").replace("minimum=25.0, maximum=35.0", "minimum=27.5, maximum=30.5")


@pytest.mark.slow
def test_marginalised_reference_agrees_with_an_independent_evidence_and_reconstructs_parameters(two_d, tmp_path):
    """Distance and phase marginalised by bilby (time is fixed in this prior, so its marginalisation is
    skipped; bilby's distance lookup table takes most of this test's 4-5 minutes): the evidence matches prior importance sampling of the unmarginalised likelihood, and the
    reconstructed distance and phase match its weighted posterior."""
    import bilby

    from gwnpe.gw.domain import build_domain
    from gwnpe.gw.likelihood import build_likelihood, log_likelihood_ratios
    from gwnpe.gw.priors import draw, fixed_parameters, load_priors
    from gwnpe.products.injections import load_event
    from gwnpe.stages.bilby import run_bilby_stage
    from gwnpe.stages.injections import run_injections_stage
    from gwnpe.stages.settings import stage_settings

    cfg = copy.deepcopy(two_d["config"])
    (tmp_path / "four_d.prior").write_text(FOUR_D_PRIOR)
    (tmp_path / "inj.json").write_text(json.dumps({"chirp_mass": [29.0], "mass_ratio": [0.8],
                                                    "luminosity_distance": [5000.0], "phase": [1.3]}))
    cfg["priors"] = str(tmp_path / "four_d.prior")
    cfg["injections"]["file"] = str(tmp_path / "inj.json")
    cfg["comparison"]["likelihood"]["marginalization"] = ["distance", "phase", "time"]
    psds = {ifo: two_d["dir"] / f"{ifo}_psd.txt" for ifo in cfg["detectors"]}
    inj_path = tmp_path / "injections.h5"
    run_injections_stage(stage_settings(cfg, "injections"), psd_paths=psds, out_path=inj_path)
    out = tmp_path / "bilby" / "injection_0" / "run_0" / "result.hdf5"
    run_bilby_stage(cfg, injections_path=inj_path, index=0, out_path=out, threads=1)
    r = bilby.core.result.read_in_result(str(out))
    assert r.meta_data["gwnpe"]["marginalized"] == ["luminosity_distance", "phase"]
    assert set(r.search_parameter_keys) == {"chirp_mass", "mass_ratio"}
    assert (out.parent / "sampler" / "distance_lookup.npz").is_file() and not (REPO / ".distance_marginalization_lookup.npz").exists()
    # the stored prior is the user's, not the values the sampler fixed
    assert r.priors["luminosity_distance"].minimum == 3000.0 and r.priors["phase"].maximum == pytest.approx(2 * np.pi)
    post = r.posterior
    assert post["luminosity_distance"].std() > 50 and post["phase"].std() > 0.1  # reconstructed, not fixed

    priors = load_priors(cfg["priors"])
    ev = load_event(inj_path, 0)
    like = build_likelihood(build_domain(cfg), ev["strain"], ev["psd"], ev["start_time"],
                            cfg["waveform"]["approximant"], cfg["waveform"]["reference_frequency"])
    keys = ["chirp_mass", "mass_ratio", "luminosity_distance", "phase"]
    theta = draw(priors, keys, 30000, np.random.default_rng(2))
    fixed = fixed_parameters(priors)
    fixed["geocent_time"] = fixed["geocent_time"] + cfg["trigger_time"]
    ref = importance_weights(log_likelihood_ratios(like, theta, fixed), np.zeros(30000), np.zeros(30000))
    assert ref["ess"] > 100
    sigma = np.hypot(ref["log_evidence_err"], r.log_evidence_err)
    assert abs(ref["log_evidence"] - r.log_bayes_factor) < 3 * sigma + 0.1, (ref["log_evidence"], r.log_bayes_factor, sigma)
    for k, bounds, periodic in (("luminosity_distance", (3000.0, 9000.0), False), ("phase", (0, 2 * np.pi), True),
                                ("chirp_mass", (27.5, 30.5), False)):
        jsd, _ = js_divergence(theta[k], post[k].to_numpy(), weights_x=ref["weights"], bounds=bounds, periodic=periodic)
        assert jsd < 0.05, (k, jsd)  # a wrong reconstruction (e.g. distance at the reference value) gives > 0.3


def test_reference_quality_labels_smoke_runs():
    from gwnpe.diagnostics.comparison import reference_quality
    from gwnpe.stages.workflow import load_config

    default = load_config(REPO / "config" / "config.yaml")["comparison"]["sampler"]
    assert reference_quality(default).startswith("smoke (nlive 100 < 1000, naccept 20 < 60)")
    validation = {**default, "nlive": 1000, "naccept": 60}
    assert reference_quality(validation).startswith("converged (nlive 1000")
    assert reference_quality({**validation, "max_calls": 50000}).startswith("smoke (capped at 50000 calls)")
