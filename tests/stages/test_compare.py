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
    with pytest.raises(ComparisonError, match="injection 2 has 3 posterior samples.*comparison.sampler.max_calls"):
        compare_injection(ref, npe, ["chirp_mass"], 0, 0)
