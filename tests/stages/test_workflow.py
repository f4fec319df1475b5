"""End-to-end: the Snakemake DAG of the data stages on config/tiny.yaml, and bad inputs through it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.conftest import REPO
from tests.workflow import SNAKEMAKE, copy_workflow, finished_tiny_run, smk, write_config

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    wd, cfg, _ = finished_tiny_run(tmp_path_factory)
    return wd, cfg


@pytest.mark.slow
def test_tiny_workflow_produces_every_output(tiny_run):
    wd, _ = tiny_run
    out = wd / "results/tiny"
    for rel in ("psd/H1_psd.txt", "psd/L1_psd.txt", "psd/H1_psd.png", "bank/bank.h5", "svd/basis.h5",
                "svd/mismatch.png", "training_set/training_set.h5", "logs/bank.log", "benchmarks/svd.tsv"):
        assert (out / rel).exists(), rel
    with h5py.File(out / "training_set/training_set.h5") as f:
        assert f["h_plus"].shape == (400, 96)
        assert np.isfinite(f["h_plus"][...]).all()
    from gwnpe.products.common import read_provenance
    from gwnpe.provenance import input_provenance, stored_text

    prov = read_provenance(out / "training_set/training_set.h5")
    # provenance chains back through basis -> bank and PSDs, each ancestor stored once
    basis = input_provenance(prov, "basis")
    assert input_provenance(basis, "bank")["stage"] == "bank"
    assert input_provenance(basis, "psd_H1")["stage"] == "psd"
    prior_text = (wd / "config/priors/default.prior").read_text()
    assert stored_text(prov, prov["settings"]["prior_file"]) == prior_text
    # a posterior file holds the prior file's text once (in the model's settings and provenance texts, not per ancestor)
    raw = (out / "posteriors/injection_0.hdf5").read_bytes()
    assert raw.count(prior_text.splitlines()[1].encode()) <= 2
    res = subprocess.run([str(Path(sys.executable).with_name("gwnpe")), "ls", str(out / "svd/basis.h5")],
                         capture_output=True, text=True)
    assert res.returncode == 0 and "stage: svd" in res.stdout


@pytest.mark.slow
def test_resource_estimates_match_the_files_written(tiny_run):
    """The memory and disk check before any job (gwnpe.stages.resources) estimates what the stages
    write: the bank, basis and training set files of the finished tiny run are each within 10% of
    their estimate (h5 metadata on top), and no estimate exceeds its file by more (lower bounds)."""
    import yaml

    from gwnpe.config import validate_config
    from gwnpe.stages.resources import estimate_resources

    wd, cfg = tiny_run
    config = validate_config(yaml.safe_load(cfg.read_text()))
    config["priors"] = str(wd / config["priors"])
    est = {e.stage: e.disk for e in estimate_resources(config)}
    out = wd / "results/tiny"
    for stage, rel in (("bank", "bank/bank.h5"), ("svd", "svd/basis.h5"), ("training_set", "training_set/training_set.h5")):
        size = (out / rel).stat().st_size
        assert 0.9 * size <= est[stage] <= size, (stage, est[stage], size)


@pytest.mark.slow
def test_tiny_workflow_compares_with_bilby(tiny_run):
    """comparison.injections: [6] in tiny.yaml: a (budget-capped) bilby run, NPE+IS and the comparison tables."""
    import json

    import bilby
    import pandas as pd

    wd, _ = tiny_run
    out = wd / "results/tiny"
    for rel in ("bilby/injection_6/run_0/result.hdf5", "bilby/injection_6/run_1/result.hdf5",
                "bilby/injection_6/run_0/bilby.log", "importance_sampling/injection_6.hdf5",
                "comparison/jsd_table.csv", "comparison/times.csv", "comparison/evidence.csv", "comparison/corner_6.png"):
        assert (out / rel).exists(), rel
    assert not (out / "bilby/injection_1").exists()
    jsd = pd.read_csv(out / "comparison/jsd.csv")
    assert len(jsd) == 9 * 2 and set(jsd.method) == {"npe", "npe_is"} and set(jsd.injection) == {6}
    assert ((jsd.jsd >= 0) & (jsd.jsd <= np.log(2) + 1e-9)).all()
    # the reference's own floor (run 0 vs run 1, other seeds) and a verdict beside every JSD
    assert ((jsd.floor >= 0) & (jsd.floor <= np.log(2) + 1e-9)).all()
    assert set(jsd.verdict) <= {"indistinguishable", "distinguishable"}
    runs = [bilby.core.result.read_in_result(str(out / f"bilby/injection_6/run_{r}/result.hdf5")) for r in (0, 1)]
    assert runs[0].meta_data["gwnpe"]["seed"] != runs[1].meta_data["gwnpe"]["seed"]
    assert runs[0].meta_data["gwnpe"]["marginalized"] == ["phase", "geocent_time"]
    for k in ("phase", "geocent_time", "luminosity_distance"):  # reconstructed or sampled: every parameter has samples
        assert runs[0].posterior[k].std() > 0, k
    summary = json.loads((out / "comparison/summary.json").read_text())
    one = summary["per_injection"]["6"]
    assert one["time_ratio_npe"] == pytest.approx(one["bilby"]["sampling_time_s"] / one["npe"]["time_s"])
    assert set(summary["aggregate"]["goals"]) == {"jsd_npe_is_max_below_0.002", "npe_is_indistinguishable_from_the_reference",
                                                  "is_efficiency_median_above_10pc",
                                                  "log_bayes_factor_within_2_sigma", "npe_1000x_faster"}
    r = bilby.core.result.read_in_result(str(out / "importance_sampling/injection_6.hdf5"))
    assert len(r.posterior) == 2000 and r.posterior["weights"].mean() == pytest.approx(1.0)
    assert r.injection_parameters["chirp_mass"] == pytest.approx(
        runs[0].injection_parameters["chirp_mass"])


@pytest.mark.slow
def test_tiny_workflow_runs_the_accuracy_campaign_on_the_loud_injections(tiny_run):
    import json

    import bilby
    import pandas as pd

    from gwnpe.products.injections import read_network_snrs

    wd, cfg = tiny_run
    out = wd / "results/tiny"
    snrs = read_network_snrs(out / "injections/injections.h5")
    expected = [i for i in range(len(snrs)) if snrs[i] >= 8.0][:2]  # tiny.yaml: accuracy.injections 2, min_snr 8
    assert len(expected) == 2
    table = pd.read_csv(out / "accuracy/accuracy.csv")
    assert list(table.injection) == expected
    np.testing.assert_allclose(table.network_snr, snrs[expected])
    assert ((table.ess >= 50) == table.reached).all() and (table.n_samples <= 1000).all()
    assert (table.n_samples % 200 == 0).all() and ((table.reached) | (table.n_samples == 1000)).all()
    summary = json.loads((out / "accuracy/summary.json").read_text())
    assert summary["events"] == 2 and summary["median_efficiency"] == pytest.approx(np.median(table.efficiency))
    assert (out / "accuracy/efficiency.png").stat().st_size > 0
    r = bilby.core.result.read_in_result(str(out / f"accuracy/injection_{expected[0]}.hdf5"))
    assert r.meta_data["gwnpe"]["importance_sampling"]["target_ess"] == 50
    assert len(r.posterior) == table.n_samples.iloc[0]


# Outputs that record wall times or the machine: compared by content below, not by bytes.
MACHINE_DEPENDENT = ("logs/", "benchmarks/", "model/throughput.csv", "report/timings.csv", "report/provenance.csv",
                     "posteriors/injection_", "pp/pp.json", "bilby/", "importance_sampling/", "comparison/",
                     "accuracy/")


@pytest.mark.slow
def test_two_runs_of_the_same_config_are_byte_identical(tiny_run, tmp_path):
    """Every CPU stage, training included: same config and seed -> the same bytes (timings aside)."""
    import bilby

    from tests.conftest import sha256

    wd1, _ = tiny_run
    wd2 = copy_workflow(tmp_path)
    res = smk(wd2, write_config(wd2))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-5000:]
    out1, out2 = wd1 / "results/tiny", wd2 / "results/tiny"
    files = sorted(p.relative_to(out1).as_posix() for p in out1.rglob("*") if p.is_file())
    assert sorted(p.relative_to(out2).as_posix() for p in out2.rglob("*") if p.is_file()) == files
    compared = [f for f in files if not f.startswith(MACHINE_DEPENDENT)]
    for must in ("psd/H1_psd.txt", "bank/bank.h5", "svd/basis.h5", "training_set/training_set.h5", "model/model.pt",
                 "model/history.csv", "injections/injections.h5", "pp/pvalues.csv", "model/loss.png"):
        assert must in compared, must
    differ = [f for f in compared if sha256(out1 / f) != sha256(out2 / f)]
    assert not differ, differ
    # files that carry wall times: their samples are identical
    for rel in ("posteriors/injection_0.hdf5", "importance_sampling/injection_6.hdf5", "bilby/injection_6/run_1/result.hdf5"):
        a = bilby.core.result.read_in_result(str(out1 / rel)).posterior
        b = bilby.core.result.read_in_result(str(out2 / rel)).posterior
        assert a.equals(b), rel


@pytest.mark.slow
def test_rerun_does_nothing_and_a_changed_setting_reruns_only_its_stages(tiny_run):
    wd, cfg = tiny_run
    res = smk(wd, cfg, "-n")
    assert res.returncode == 0 and "Nothing to be done" in res.stdout + res.stderr, res.stdout + res.stderr
    changed = write_config(wd, "svd_changed.yaml", svd={"size": 80})  # not the shared run's own config file
    res = smk(wd, changed, "-n", "--quiet", "rules")
    text = res.stdout + res.stderr
    assert res.returncode == 0, text
    assert "svd" in text and "training_set" in text
    assert "bank " not in text and "psd " not in text and "\nbank" not in text and "\npsd" not in text, text


@pytest.mark.slow
def test_lint_is_clean():
    res = subprocess.run([SNAKEMAKE, "--lint", "--configfile", "config/tiny.yaml"], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Lints for" not in res.stdout + res.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides, needle",
    [
        ({"bogus": 1}, "unknown config key 'bogus'"),
        ({"domain": {"sampling_frequency": 256.0}}, "Nyquist"),
        ({"detectors": ["H1", "Q1"]}, "'Q1'"),
        ({"bank": {"size": 120}}, "bank.size = 120"),
        ({"svd": {"size": "many"}}, "svd.size"),
        ({"comparison": {"injections": [3, 99]}}, "comparison.injections names injection index 99"),
        ({"comparison": {"injections": 30}}, "the campaign has 24"),
    ],
)
def test_bad_config_stops_before_any_job(tmp_path, overrides, needle):
    wd = copy_workflow(tmp_path)
    res = smk(wd, write_config(wd, **overrides))
    assert res.returncode != 0
    assert needle in res.stdout + res.stderr
    assert not (wd / "results").exists()


@pytest.mark.slow
def test_unknown_prior_parameter_stops_before_any_job(tmp_path):
    wd = copy_workflow(tmp_path)
    prior = wd / "config/priors/bad.prior"
    prior.write_text((REPO / "config/priors/default.prior").read_text() + "spin_magnitude = Uniform(minimum=0, maximum=1)\n")
    res = smk(wd, write_config(wd, priors="config/priors/bad.prior"))
    assert res.returncode != 0 and "spin_magnitude" in res.stdout + res.stderr
    assert not (wd / "results").exists()


def _gwosc_file(path: Path, t0: float, fs: float, duration: float, nan_at=None):
    rng = np.random.default_rng(0)
    data = rng.normal(size=int(duration * fs)) * 1e-21
    if nan_at is not None:
        data[int(nan_at * fs)] = np.nan
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("strain/Strain", data=data)
        ds.attrs["Xstart"] = t0
        ds.attrs["Xspacing"] = 1.0 / fs
    return path


@pytest.mark.slow
def test_missing_strain_file_is_named(tmp_path):
    wd = copy_workflow(tmp_path)
    cfg = write_config(wd, psd={"source": "files", "strain_files": {"H1": "data/H1.hdf5", "L1": "data/L1.hdf5"}})
    res = smk(wd, cfg)
    assert res.returncode != 0
    assert "data/H1.hdf5" in res.stdout + res.stderr
    assert not list((wd / "results").rglob("*_psd.txt")) if (wd / "results").exists() else True


@pytest.mark.slow
def test_nan_strain_fails_the_psd_stage_and_leaves_no_psd(tmp_path):
    wd = copy_workflow(tmp_path)
    (wd / "data").mkdir()
    trigger, seg_start = 1187008882.4, 1187008882.4 - 2.0
    t0 = seg_start - 256.0 - 16.0
    _gwosc_file(wd / "data/H1.hdf5", t0, 512.0, 300.0, nan_at=100.0)
    _gwosc_file(wd / "data/L1.hdf5", t0, 512.0, 300.0)
    cfg = write_config(wd, trigger_time=trigger,
                  psd={"source": "files", "strain_files": {"H1": "data/H1.hdf5", "L1": "data/L1.hdf5"}})
    res = smk(wd, cfg, "--keep-going", "results/tiny/psd/H1_psd.txt", "results/tiny/psd/L1_psd.txt")
    assert res.returncode != 0
    log = (wd / "results/tiny/logs/psd/H1.log").read_text()
    assert "NaN" in log or "non-finite" in log, log
    assert "H1.hdf5" in log
    assert not (wd / "results/tiny/psd/H1_psd.txt").exists()
    assert (wd / "results/tiny/psd/L1_psd.txt").exists()


@pytest.mark.slow
@pytest.mark.parametrize("names", [("config.yaml",), ("production.yaml",), ("config.yaml", "validation.yaml"),
                                   ("config.yaml", "noise_conditioned.yaml")])
def test_shipped_configs_build_their_dag(names):
    """`snakemake -n` resolves the whole DAG of the laptop default, of the production config and of the
    validation laid over the default (two reference runs per compared injection, one lookup table)."""
    from tests.workflow import job_stats

    res = subprocess.run([SNAKEMAKE, "-n", "--forceall", "--configfile", *[f"config/{n}" for n in names],
                          "--directory", str(REPO)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "pp" in res.stdout and "train" in res.stdout
    jobs = job_stats(res.stdout)
    assert jobs["accuracy"] == 1 and jobs["injections"] == 1  # its per-event jobs follow the injections checkpoint
    if names == ("config.yaml",):
        assert jobs["bilby"] == 2 and jobs["distance_lookup"] == 1 and jobs["importance_sampling"] == 1
    if "validation.yaml" in names:
        assert jobs["bilby"] == 16 and jobs["distance_lookup"] == 1 and jobs["importance_sampling"] == 8
    if "noise_conditioned.yaml" in names:  # the ASD set feeds training and the held-out injections
        assert jobs["asd_dataset"] == 1 and "bilby" not in jobs
        assert re.search(r"rule train:\n(.*\n)*?\s+input: .*asd_dataset/asd_dataset\.h5", res.stdout)
        assert re.search(r"checkpoint injections:\n(.*\n)*?\s+input: .*asd_dataset/asd_dataset\.h5", res.stdout)
    else:
        assert "asd_dataset" not in jobs
