"""What a second `snakemake` run redoes after a change: dry runs on one finished tiny run.

One run of config/tiny.yaml with profiles/local (``--cores 2``) in a temporary copy of the
workflow is shared by every check here (and by tests/test_slurm.py as its reference run). Each
check is a dry run (``-n``) whose job-stats table is parsed into the set of rules Snakemake would
run; nothing is changed in the finished run itself, and nothing in the checkout. All runs import a
snapshot of the gwnpe package taken at the start (see :func:`package_snapshot`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from .conftest import REPO

pytestmark = pytest.mark.slow

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
WORKFLOW_FILES = ("Snakefile", "rules", "scripts", "config", "report", "profiles", "envs")

# Rules of the finished run; the report-side ones follow the posteriors.
UPSTREAM = {"psd", "bank", "svd", "training_set"}
REPORT_SIDE = {"posteriors", "pp", "corner", "timings"}


# --- helpers shared with tests/test_slurm.py ---------------------------------------------------


def copy_workflow(dest: Path) -> Path:
    """A runnable copy of the workflow (not of the gwnpe package, which stays installed)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dest / name)
    return dest


def write_config(dest: Path, name: str = "test_config.yaml", **overrides) -> Path:
    """config/tiny.yaml with top-level keys replaced, or (for dicts) updated one level deep."""
    cfg = yaml.safe_load((REPO / "config/tiny.yaml").read_text())
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    path = dest / name
    path.write_text(yaml.safe_dump(cfg))
    return path


_SNAPSHOT: list[Path] = []


def package_snapshot(tmp_path_factory) -> Path:
    """A copy of the gwnpe package, taken once per session, that every run here imports.

    :func:`smk` puts it first on PYTHONPATH (ahead of the editable install), so all runs of the
    session use the same code even if the checkout is edited or committed meanwhile, and the
    provenance they write is the same (outside a git checkout ``gwnpe_git`` is null).
    """
    if not _SNAPSHOT:
        root = tmp_path_factory.mktemp("gwnpe_snapshot")
        shutil.copytree(REPO / "gwnpe", root / "gwnpe", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(REPO / "config", root / "config")  # gwnpe.config reads ../config/schema.yaml
        _SNAPSHOT.append(root)
    return _SNAPSHOT[0]


def smk(workdir: Path, configfile: Path, *args, profile: str = "profiles/local", env: dict | None = None,
        pythonpath: tuple = (), timeout: float = 900) -> subprocess.CompletedProcess:
    """Run snakemake on the copy in ``workdir`` with a workflow profile (local: ``--cores 2``).

    ``pythonpath`` goes first on PYTHONPATH, then the session's package snapshot (if made).
    """
    cmd = [SNAKEMAKE, "--workflow-profile", str(workdir / profile), "--configfile", str(configfile),
           "--directory", str(workdir), "--snakefile", str(workdir / "Snakefile")]
    if profile == "profiles/local":
        cmd += ["--cores", "2"]
    paths = [str(p) for p in (*pythonpath, *_SNAPSHOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]
    full_env = {**os.environ, **(env or {}), **({"PYTHONPATH": os.pathsep.join(paths)} if paths else {})}
    return subprocess.run([*cmd, *args], cwd=workdir, capture_output=True, text=True, timeout=timeout, env=full_env)


def planned_jobs(res: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule -> job count from a dry run's "Job stats" table ({} when there is nothing to do)."""
    text = res.stdout + res.stderr
    assert res.returncode == 0, text[-5000:]
    if "Nothing to be done" in text:
        return {}
    assert "Job stats:" in text, text[-5000:]
    table = text.split("Job stats:", 1)[1]
    jobs = {}
    for line in table.splitlines()[3:]:  # skip the "Job stats:" rest, header and dashes
        m = re.match(r"^(\w+)\s+(\d+)\s*$", line)
        if not m or m.group(1) == "total":
            break
        jobs[m.group(1)] = int(m.group(2))
    assert jobs, text[-5000:]
    return jobs


_RUNS: dict[str, tuple] = {}


def finished_tiny_run(tmp_path_factory) -> tuple[Path, Path, float]:
    """(workdir, configfile, seconds) of one complete local-profile tiny run, made once per session."""
    package_snapshot(tmp_path_factory)
    if "tiny" not in _RUNS:
        wd = copy_workflow(tmp_path_factory.mktemp("tiny_local"))
        cfg = write_config(wd)
        t0 = time.monotonic()
        res = smk(wd, cfg)
        _RUNS["tiny"] = (wd, cfg, time.monotonic() - t0, res)
    wd, cfg, seconds, res = _RUNS["tiny"]
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-5000:]
    return wd, cfg, seconds


def tiny_run_jobs() -> dict[str, int]:
    """Rule -> job count of the finished tiny run (its "Job stats" table)."""
    return planned_jobs(_RUNS["tiny"][3])


# --- the checks ---------------------------------------------------------------------------------


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
    _assert_plan(_dry(wd, cfg), rerun={"train"} | REPORT_SIDE, kept=UPSTREAM | {"injections"})


def test_psd_setting_reruns_psd_and_everything_downstream(tiny_run):
    wd, _, _ = tiny_run
    cfg = write_config(wd, "psd.yaml", psd={"overlap": 0.25})
    plan = _dry(wd, cfg)
    assert plan.get("psd") == 2, plan  # both detectors
    _assert_plan(plan, rerun={"psd", "svd", "training_set", "train", "injections"} | REPORT_SIDE, kept={"bank"})


def test_library_edit_reruns_the_stages_using_it(tiny_run, tmp_path):
    """Edit gwnpe/waveforms.py in a copy of the package that PYTHONPATH puts first; the checkout is untouched."""
    wd, cfg, _ = tiny_run
    pkg = tmp_path / "site"
    shutil.copytree(_SNAPSHOT[0], pkg)  # the code of the finished run
    with open(pkg / "gwnpe/waveforms.py", "a") as f:
        f.write("\n# edited by tests/test_rerun.py\n")
    path = os.pathsep.join(str(p) for p in (pkg, *_SNAPSHOT))  # as smk(pythonpath=...) sets it
    probe = subprocess.run([sys.executable, "-c", "import importlib.util as u; print(u.find_spec('gwnpe.waveforms').origin)"],
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": path}, cwd=wd)
    assert probe.stdout.strip() == str(pkg / "gwnpe/waveforms.py"), probe.stdout + probe.stderr
    # bank, training_set and injections hash gwnpe.waveforms; svd, train and the rest follow their inputs
    _assert_plan(_dry(wd, cfg, pythonpath=(pkg,)), rerun={"bank", "svd", "training_set", "train", "injections"} | REPORT_SIDE,
                 kept={"psd"})


def test_injection_count_reruns_injections_and_report_side_only(tiny_run):
    wd, _, _ = tiny_run
    cfg = write_config(wd, "inj.yaml", injections={"count": 16})
    _assert_plan(_dry(wd, cfg), rerun={"injections"} | REPORT_SIDE, kept=UPSTREAM | {"train"})
