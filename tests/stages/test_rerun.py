"""What a second `snakemake` run redoes after a change: dry runs on one finished tiny run.

One run of config/tiny.yaml with profiles/local (``--cores 2``) in a temporary copy of the
workflow is shared by every check here (and by the Slurm and workflow tests as their reference
run). Each check is a dry run (``-n``) whose job-stats table is parsed into the set of rules
Snakemake would run; nothing is changed in the finished run itself, and nothing in the checkout.
All runs import a snapshot of the gwnpe package taken at the start (see
:func:`tests.workflow.package_snapshot`); library edits are made in a copy of that snapshot which
PYTHONPATH puts first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.workflow import _SNAPSHOT, finished_tiny_run, planned_jobs, smk, write_config

pytestmark = pytest.mark.slow

# Rules of the finished run; the report-side ones follow the posteriors.
UPSTREAM = {"psd", "bank", "svd", "training_set"}
REPORT_SIDE = {"posteriors", "pp", "corner", "timings"}
COMPARISON = {"bilby", "importance_sampling", "compare", "compare_corner"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return finished_tiny_run(tmp_path_factory)


def _dry(wd: Path, cfg: Path, **kw) -> dict[str, int]:
    return planned_jobs(smk(wd, cfg, "-n", timeout=300, **kw))


def _assert_plan(plan: dict, rerun: set, kept: set):
    assert rerun <= plan.keys(), f"expected {sorted(rerun)} to rerun; dry run plans {plan}"
    assert not kept & plan.keys(), f"expected {sorted(kept)} to stay; dry run plans {plan}"


def test_unchanged_run_has_nothing_to_do(tiny_run):
    wd, cfg, _ = tiny_run
    assert _dry(wd, cfg) == {}


def test_training_setting_reruns_training_and_after(tiny_run):
    wd, _, _ = tiny_run
    cfg = write_config(wd, "lr.yaml", training={"learning_rate": 5.0e-4})
    _assert_plan(_dry(wd, cfg), rerun={"train"} | REPORT_SIDE, kept=UPSTREAM | {"injections", "bilby"})


def test_psd_setting_reruns_psd_and_everything_downstream(tiny_run):
    wd, _, _ = tiny_run
    cfg = write_config(wd, "psd.yaml", psd={"overlap": 0.25})
    plan = _dry(wd, cfg)
    assert plan.get("psd") == 2, plan  # both detectors
    _assert_plan(plan, rerun={"psd", "svd", "training_set", "train", "injections"} | REPORT_SIDE, kept={"bank"})


def test_injection_count_reruns_injections_and_report_side_only(tiny_run):
    wd, _, _ = tiny_run
    cfg = write_config(wd, "inj.yaml", injections={"count": 16})
    _assert_plan(_dry(wd, cfg), rerun={"injections"} | REPORT_SIDE, kept=UPSTREAM | {"train"})


def test_posterior_sample_count_reruns_posteriors_not_injections(tiny_run):
    """injections.n_samples shapes the posteriors, not the campaign: the settings table keeps them apart."""
    wd, _, _ = tiny_run
    cfg = write_config(wd, "nsamples.yaml", injections={"n_samples": 400})
    _assert_plan(_dry(wd, cfg), rerun=REPORT_SIDE, kept=UPSTREAM | {"train", "injections"} | COMPARISON)


@pytest.mark.parametrize("overrides", [
    {"dask": {"n_workers": 1}},
    {"training_set": {"retries": 3}},
    {"training": {"device": "cpu"}},
    {"comparison": {"sampler": {"checkpoint_interval": 30}}},
    {"limits": {"memory_gb": 500}},
], ids=["dask.n_workers", "training_set.retries", "training.device", "comparison.sampler.checkpoint_interval",
        "limits.memory_gb"])
def test_runtime_keys_rerun_nothing(tiny_run, overrides):
    """Runtime keys change how a stage runs, not what it makes (gwnpe.stages.settings.RUNTIME_KEYS)."""
    import yaml

    wd, base, _ = tiny_run
    cfg = yaml.safe_load(base.read_text())
    for section, values in overrides.items():
        node = cfg.setdefault(section, {})
        for key, value in values.items():
            node[key] = {**node.get(key, {}), **value} if isinstance(value, dict) else value
    path = wd / "runtime.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert _dry(wd, path) == {}


def _edited_package(tmp_path: Path, module_file: str) -> Path:
    """A copy of the finished run's package with one module edited (a comment appended)."""
    pkg = tmp_path / "site"
    shutil.copytree(_SNAPSHOT[0], pkg)
    with open(pkg / "gwnpe" / module_file, "a") as f:
        f.write("\n# edited by tests/stages/test_rerun.py\n")
    path = os.pathsep.join(str(p) for p in (pkg, *_SNAPSHOT))  # as smk(pythonpath=...) sets it
    name = "gwnpe." + module_file.removesuffix(".py").replace("/", ".")
    probe = subprocess.run([sys.executable, "-c", f"import importlib.util as u; print(u.find_spec('{name}').origin)"],
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": path}, cwd=tmp_path)
    assert probe.stdout.strip() == str(pkg / "gwnpe" / module_file), probe.stdout + probe.stderr
    return pkg


@pytest.mark.parametrize("module_file, rerun, kept", [
    # in train's import closure (the simulator draws extrinsic parameters with it): train reruns, and
    # so does every stage whose closure holds it, e.g. bank; the PSD stage does not use priors
    ("gw/priors.py", {"bank", "svd", "training_set", "train", "injections"} | REPORT_SIDE, {"psd"}),
    # the network: train and what follows; the data stages stay
    ("nn/embedding.py", {"train"} | REPORT_SIDE, UPSTREAM | {"injections", "bilby"}),
    # outside train's closure: only the comparison uses the JSD
    ("diagnostics/jsd.py", {"compare"}, UPSTREAM | {"train", "injections", "posteriors", "bilby", "importance_sampling"}),
    # waveforms: every stage that generates waveforms (bank, training set, injections) and what follows
    ("gw/waveforms.py", {"bank", "svd", "training_set", "train", "injections"} | REPORT_SIDE, {"psd"}),
], ids=["gw/priors.py", "nn/embedding.py", "diagnostics/jsd.py", "gw/waveforms.py"])
def test_library_edit_reruns_exactly_the_stages_whose_code_changed(tiny_run, tmp_path, module_file, rerun, kept):
    """Code hashes cover each stage module's import closure (computed, not listed), so an edit reruns
    the stages that import the edited module, directly or not, and what follows them; nothing else."""
    wd, cfg, _ = tiny_run
    pkg = _edited_package(tmp_path, module_file)
    _assert_plan(_dry(wd, cfg, pythonpath=(pkg,)), rerun=rerun, kept=kept)
