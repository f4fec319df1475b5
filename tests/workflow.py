"""Workflow helpers shared by the end-to-end tests: a copy of the workflow, configs, Snakemake runs
(local and Slurm profiles), dry-run plans, and one finished tiny run per session."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.conftest import REPO

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
WORKFLOW_FILES = ("Snakefile", "rules", "scripts", "config", "report", "profiles", "envs")

# Rules of the finished run; the report-side ones follow the posteriors.
UPSTREAM = {"psd", "bank", "svd", "training_set"}
REPORT_SIDE = {"posteriors", "pp", "corner", "timings"}


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

    Every run imports the session's package snapshot (:func:`package_snapshot`) once one was taken.

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
    """Rule -> job count of the finished tiny run: every job it ran, those added after the injections
    checkpoint included (its first "Job stats" table is printed before them), from the job headers."""
    res = _RUNS["tiny"][3]
    jobs: dict[str, int] = {}
    for name in re.findall(r"^(?:local)?(?:rule|checkpoint) (\w+):\s*$", res.stdout + res.stderr, flags=re.M):
        jobs[name] = jobs.get(name, 0) + 1
    assert jobs.get("accuracy_sampling"), "the tiny run should run the accuracy campaign's jobs"
    return jobs


def job_stats(text: str) -> dict[str, int]:
    """The (last) 'Job stats' table of a Snakemake log as {rule: count}."""
    tables = re.findall(r"Job stats:\njob\s+count\n[- ]+\n(.*?)\ntotal\s+\d+", text, flags=re.S)
    assert tables, text[-3000:]
    return {rule: int(n) for rule, n in (line.split() for line in tables[-1].strip().splitlines())}
