"""The workflow on Slurm: profiles/slurm end to end on a one-node test cluster, and dask on Slurm.

scripts/slurm/start_test_cluster.sh starts slurmctld, slurmd and munged in a temporary folder
(installing slurm-wlm and munge with apt-get when they are missing and we are root, as in CI on a
fresh Debian 12 machine); the module's fixture stops exactly those daemons at the end. The
reference is the local-profile tiny run that tests/test_rerun.py also uses: the same config and
seed must give the same bytes however the jobs are run.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO
from tests.workflow import copy_workflow, finished_tiny_run, planned_jobs, smk, tiny_run_jobs, write_config

pytestmark = pytest.mark.slow

START = REPO / "scripts/slurm/start_test_cluster.sh"
STOP = REPO / "scripts/slurm/stop_test_cluster.sh"
# Outputs that must be byte-identical to the local run (provenance holds no time or host).
IDENTICAL = ("psd/H1_psd.txt", "psd/L1_psd.txt", "bank/bank.h5", "svd/basis.h5", "training_set/training_set.h5")
SUBMITTED = re.compile(r"Job (\S+) has been submitted with SLURM jobid (\d+) \(log: (\S+)\)")


def _unavailable() -> str | None:
    if all(shutil.which(x) for x in ("slurmctld", "slurmd", "munged")):
        return None
    if os.geteuid() == 0 and shutil.which("apt-get"):
        return None  # the start script installs them
    return ("Slurm is not installed (no slurmctld/slurmd/munged) and this user cannot install it: run the tests as "
            "root on Debian/Ubuntu (the start script apt-gets slurm-wlm and munge) or install those packages")


@dataclass
class Cluster:
    dir: Path
    env: dict
    cpus: int
    mem_mb: int

    def jobcomp(self) -> dict[str, dict]:
        """Slurm's own record of finished jobs (jobcomp/filetxt): job id -> fields."""
        path = self.dir / "log/jobcomp.log"
        out = {}
        for line in path.read_text().splitlines() if path.exists() else []:
            fields = dict(m.groups() for m in re.finditer(r"(\w+)=(\S*)", line))
            if "JobId" in fields:
                out[fields["JobId"]] = fields
        return out


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    reason = _unavailable()
    if reason:
        pytest.skip(reason)
    d = tmp_path_factory.mktemp("slurm")
    # at least 2 CPUs: the jobs below use profiles/local's threads (2) so outputs compare like for like
    env = {**os.environ, "SLURM_TEST_CPUS": str(max(2, os.cpu_count() or 1))}
    res = subprocess.run(["bash", str(START), str(d)], capture_output=True, text=True, timeout=900, env=env)
    try:
        assert res.returncode == 0, f"test cluster did not start:\n{res.stdout}\n{res.stderr[-6000:]}"
        m = re.search(r"^export SLURM_CONF=(\S+)$", res.stdout, re.M)  # the line to eval in a shell
        assert m and Path(m.group(1)) == (d / "slurm.conf").resolve(), res.stdout
        cenv = {"SLURM_CONF": m.group(1)}
        node = subprocess.run(["scontrol", "show", "node", "localhost"], capture_output=True, text=True,
                              env={**os.environ, **cenv}, timeout=30).stdout
        cpus = int(re.search(r"CPUTot=(\d+)", node).group(1))
        mem = int(re.search(r"RealMemory=(\d+)", node).group(1))
        yield Cluster(d, cenv, cpus, mem)
    finally:
        stop = subprocess.run(["bash", str(STOP), str(d)], capture_output=True, text=True, timeout=120)
        assert stop.returncode == 0, stop.stderr
        assert not (d / "pids").exists()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _assert_same_model(a: Path, b: Path):
    import torch

    sa = torch.load(a, map_location="cpu", weights_only=False)["state_dict"]
    sb = torch.load(b, map_location="cpu", weights_only=False)["state_dict"]
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), f"model weight {k} differs"


def _assert_same_posteriors(ref: Path, new: Path):
    """Same samples; the files may differ in timing metadata (sampling_time) only."""
    from bilby.core.result import read_in_result

    files = sorted(p.name for p in (ref / "posteriors").glob("injection_*.hdf5"))
    assert files and files == sorted(p.name for p in (new / "posteriors").glob("injection_*.hdf5"))
    for name in files:
        pa = read_in_result(str(ref / "posteriors" / name)).posterior
        pb = read_in_result(str(new / "posteriors" / name)).posterior
        assert list(pa.columns) == list(pb.columns), name
        for col in pa.columns:
            assert np.array_equal(pa[col].to_numpy(), pb[col].to_numpy()), f"{name}: posterior column {col} differs"


def _slurm_submissions(text: str) -> list[tuple[str, str, str]]:
    """(rule_<name> or group_<name>, snakemake job id, Slurm job id) of every job the executor submitted."""
    out = []
    for snake_id, slurm_id, log in SUBMITTED.findall(text):
        kind = next(p for p in Path(log).parts if p.startswith(("rule_", "group_")))
        out.append((kind, snake_id, slurm_id))
    return out


def test_workflow_on_slurm_equals_local_run(slurm_cluster, tmp_path_factory):
    ref_wd, _, local_seconds = finished_tiny_run(tmp_path_factory)
    wd = copy_workflow(tmp_path_factory.mktemp("tiny_slurm"))
    cfg = write_config(wd)
    mem = min(1000, slurm_cluster.mem_mb // 4)
    # The real profiles/slurm, with only what a one-node CPU test cluster needs overridden (each
    # command-line value replaces the profile's whole key):
    overrides = [
        # the test node's partition (leaving it unset would use the same default) and memory that fits
        # it; replaces the profile's 4-64 GB requests
        "--default-resources", "slurm_partition=debug", f"mem_mb={mem}", "runtime=30",
        # the profile's 4-8 CPUs per big job would not fit; profiles/local's threads give comparable outputs.
        # accuracy_sampling serially: two dask workers in a 1 GB job get 500 MiB each, less than bilby's
        # footprint, and dask pauses them (then "No valid workers found"); its weights equal the dask run's
        "--set-threads", "svd=2", "training_set=2", "train=2", "accuracy_sampling=1",
        # no GPU here: train as a CPU job (replaces the profile's set-resources, gpu: 1 included)
        "--set-resources", "train:gpu=0",
        # short jobs: status checks 4 s after a submission, then +14 s (the plugin adds 10 s per check
        # without news), which catches these ~10-15 s jobs; the profile's 40 s would idle ~30 s per job.
        # MinJobAge 300 >= 3 x 4 keeps squeue in use.
        "--slurm-init-seconds-before-status-checks", "4",
        "--slurm-keep-successful-logs",
    ]
    t0 = time.monotonic()
    try:
        res = smk(wd, cfg, *overrides, profile="profiles/slurm", env=slurm_cluster.env, timeout=600)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace") + (exc.stderr or b"").decode(errors="replace")
        pytest.fail(f"snakemake on Slurm did not finish in 600 s (a status-check hang?):\n{out[-5000:]}")
    slurm_seconds = time.monotonic() - t0
    text = res.stdout + res.stderr
    assert res.returncode == 0, text[-8000:]
    assert "Falling back to 'sacct'" not in text, "status checks should use squeue (profiles/slurm)"

    # Every job except `rule all` ran as a Slurm job: submitted (Snakemake's log) and finished
    # COMPLETED in partition debug (Slurm's own job-completion record).
    expected = tiny_run_jobs()  # every job of the local run
    expected.pop("all", None)
    subs = _slurm_submissions(text)
    per_rule: dict[str, int] = {}
    for kind, _, _ in subs:
        per_rule[kind] = per_rule.get(kind, 0) + 1
    grouped = {"corner"}  # profiles/slurm groups corner jobs (group corner_plots)
    for rule, count in expected.items():
        if rule in grouped:
            continue
        assert per_rule.get(f"rule_{rule}") == count, f"{rule}: {count} jobs expected on Slurm, got {per_rule}"
    group_jobs = [s for s in subs if s[0].startswith("group_")]
    assert group_jobs, f"the corner jobs should run as a Slurm group job: {per_rule}"
    assert len(subs) == sum(c for r, c in expected.items() if r not in grouped) + len(group_jobs)
    logs = list((wd / ".snakemake/slurm_logs").rglob("*.log"))
    assert any("corner" in p.read_text(errors="replace") for p in logs if "group_" in str(p)), logs
    comp = _wait_for_records(slurm_cluster, {s[2] for s in subs})
    for _, _, slurm_id in subs:
        assert comp[slurm_id]["JobState"] == "COMPLETED", comp[slurm_id]
        assert comp[slurm_id]["Partition"] == "debug", comp[slurm_id]

    ref, new = ref_wd / "results/tiny", wd / "results/tiny"
    for rel in IDENTICAL:
        assert _sha256(ref / rel) == _sha256(new / rel), f"{rel} differs between the local and the Slurm run"
    _assert_same_model(ref / "model/model.pt", new / "model/model.pt")
    _assert_same_posteriors(ref, new)
    for rel in ("pp/pp.json", "report/timings.csv", "report/provenance.csv", "posteriors/corner_0.png"):
        assert (new / rel).exists(), rel
    print(f"\nlocal run {local_seconds:.0f} s, Slurm run {slurm_seconds:.0f} s ({len(subs)} Slurm jobs)")


def _wait_for_records(cluster: Cluster, ids: set[str], timeout: float = 30) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    while True:
        comp = cluster.jobcomp()
        if ids <= comp.keys() or time.monotonic() > deadline:
            missing = ids - comp.keys()
            assert not missing, f"Slurm has no completion record of jobs {sorted(missing)}"
            return comp
        time.sleep(0.5)


def test_training_set_on_dask_slurm_workers(slurm_cluster, tmp_path_factory):
    """dask.cluster: slurm: the training-set stage submits its workers as Slurm jobs; same bytes."""
    ref_wd, _, _ = finished_tiny_run(tmp_path_factory)
    wd = tmp_path_factory.mktemp("tiny_dask_slurm")
    shutil.copytree(ref_wd, wd, symlinks=True, dirs_exist_ok=True)  # results and metadata of the local run
    before = set(slurm_cluster.jobcomp())
    memory = f"{min(2000, slurm_cluster.mem_mb // 3)}MB"
    cfg = write_config(wd, "dask_slurm.yaml", dask={
        "cluster": "slurm",
        "n_workers": 2,  # two worker jobs
        "slurm": {"queue": "debug", "cores": 1, "memory": memory, "walltime": "00:10:00",
                  "scheduler_host": "127.0.0.1"},
    })
    target = "results/tiny/training_set/training_set.h5"
    # Snakemake itself runs locally here (as on a login node); only the dask workers go to Slurm.
    res = smk(wd, cfg, target, "--forcerun", "training_set", env=slurm_cluster.env, timeout=600)
    text = res.stdout + res.stderr
    assert res.returncode == 0, text[-8000:]
    assert planned_jobs(res) == {"training_set": 1}, text[-3000:]
    log = (wd / "results/tiny/logs/training_set.log").read_text()
    assert "Slurm dask cluster" in log, log

    workers = _wait_for_new_workers(slurm_cluster, before)
    assert len(workers) == 2, workers
    for rec in workers:
        assert rec["Partition"] == "debug" and rec["StartTime"] not in ("", "Unknown", "None"), rec
    assert _sha256(ref_wd / target) == _sha256(wd / target), "training set from dask-on-Slurm workers differs"


def _wait_for_new_workers(cluster: Cluster, before: set[str], timeout: float = 60) -> list[dict]:
    """Completion records of dask-jobqueue worker jobs (job name dask-worker) finished after ``before``."""
    deadline = time.monotonic() + timeout
    while True:
        new = [r for i, r in cluster.jobcomp().items() if i not in before and r.get("Name") == "dask-worker"]
        if len(new) >= 2 or time.monotonic() > deadline:
            return new
        time.sleep(0.5)
