"""Faults the pipeline must survive with nothing lost.

1. Training SIGKILLed in the middle of an epoch resumes from the last completed epoch
   and ends with the weights of an uninterrupted run.
2. A dask worker SIGKILLed while generating the training set: its chunk is recomputed
   and ``training_set.h5`` is byte-identical to an undisturbed run.
3. Every stage writer writes to a temporary name and renames: a write that fails
   half-way leaves neither the output nor a temporary file.
4. A full disk, a permission error or a file where a folder should be is a
   :class:`~gwnpe.errors.GwnpeError` (printed as one line by the rule scripts and the
   ``gwnpe`` CLI) that names the output and what to do, and leaves no partial file.
5. Snakemake SIGKILLed (with its jobs) while a job runs: after ``snakemake --unlock``
   the rerun redoes only the killed job, none of the finished upstream ones.
"""

from __future__ import annotations

import copy
import errno
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from gwnpe.products.training_set import load_training_set
from gwnpe.inference.sampling import model_priors
from gwnpe import provenance
from gwnpe.stages import training_set as ts
from gwnpe.errors import GwnpeError

from tests.conftest import REPO, sha256, train_model
from tests.workflow import SNAKEMAKE, copy_workflow, job_stats, write_config


def _files(folder: Path) -> list[str]:
    """Every file and folder under ``folder`` (hidden ones included), relative, sorted."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def _group_alive(pgid: int) -> list[int]:
    """Pids of the live (not zombie) processes of process group ``pgid``."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(stat.parent.name))
    return alive


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group of ``proc`` (started with start_new_session) and wait until it is gone."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)
    deadline = time.monotonic() + 20
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = _group_alive(proc.pid)
    for pid in left:  # ours: the killed run's children; never leave them behind
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes {left} of the killed run survived SIGKILL of its process group"


# --------------------------------------------------------------------------- 1. training killed mid-epoch

_TRAIN_DRIVER = r"""
import json, logging, os, sys, time
from pathlib import Path

args = json.loads(sys.argv[1])
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
out = Path(args["out"])
if args["marker"]:
    # Test driver only (gwnpe is unchanged): once the epoch-1 checkpoint exists, let two optimiser
    # steps of epoch 2 run, then block before the third batch, so that the test kills a process
    # that is certainly in the middle of epoch 2 however loaded the machine is.
    from gwnpe.nn.simulator import Simulator

    batch, calls = Simulator.loss_inputs, []

    def paused_batch(self, *a, **kw):
        if (out / "checkpoint.pt").exists():
            calls.append(1)
            if len(calls) == 3:
                Path(args["marker"]).write_text(str(os.getpid()))
                time.sleep(600)
        return batch(self, *a, **kw)

    Simulator.loss_inputs = paused_batch

from gwnpe.stages.train import TrainOutputs, run_train_stage

p = args["products"]
run_train_stage(args["settings"], training_set_path=p["training_set"], basis_path=p["basis"], psd_paths=p["psds"],
                out=TrainOutputs(model=out / "model.pt", history=out / "history.csv", plot=out / "loss.png",
                                 checkpoint=out / "checkpoint.pt"), threads=2)
"""


def _train_cmd(products, settings, out: Path, marker: Path | None = None) -> list[str]:
    args = {
        "out": str(out),
        "marker": str(marker) if marker else None,
        "settings": settings,
        "products": {"training_set": str(products["training_set"]), "basis": str(products["basis"]),
                     "psds": {k: str(v) for k, v in products["psds"].items()}},
    }
    return [sys.executable, "-c", _TRAIN_DRIVER, json.dumps(args)]


def _train(products, settings, out: Path) -> str:
    out.mkdir(exist_ok=True)
    res = subprocess.run(_train_cmd(products, settings, out), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-5000:]
    return res.stderr


def test_training_killed_mid_epoch_resumes_and_matches_uninterrupted_run(tiny_products, tmp_path):

    cfg = copy.deepcopy(tiny_products["config"])
    cfg["training"].update(epochs=3, device="cpu")  # CPU: bit-for-bit reproducible
    settings = cfg
    out, marker = tmp_path / "killed", tmp_path / "in-epoch-2"
    out.mkdir()
    log = tmp_path / "killed.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(_train_cmd(tiny_products, settings, out, marker), cwd=REPO, stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert proc.poll() is None, "training ended before epoch 2:\n" + log.read_text()[-5000:]
            assert time.monotonic() < deadline, "training never reached epoch 2"
            time.sleep(0.02)
        # inside epoch 2: epoch 1 is checkpointed, epoch 2 is not
        assert torch.load(out / "checkpoint.pt", weights_only=False)["epoch"] == 1
        assert "epoch 1/3:" in log.read_text() and "epoch 2/3:" not in log.read_text()
    finally:
        _kill_group(proc)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "model.pt").exists() and not (out / "history.csv").exists()
    assert torch.load(out / "checkpoint.pt", weights_only=False)["epoch"] == 1
    assert [p for p in _files(out) if ".tmp" in p] == []

    rerun = _train(tiny_products, settings, out)
    assert re.search(r"resuming from checkpoint '.*checkpoint\.pt' after epoch 1\b", rerun), rerun[-3000:]
    assert "epoch 1/3:" not in rerun and "epoch 2/3:" in rerun and "epoch 3/3:" in rerun  # at most one epoch lost
    assert [line.split(",")[0] for line in (out / "history.csv").read_text().splitlines()[1:]] == ["1", "2", "3"]
    assert not (out / "checkpoint.pt").exists()

    _train(tiny_products, settings, tmp_path / "reference")  # uninterrupted
    a = torch.load(out / "model.pt", weights_only=False)
    b = torch.load(tmp_path / "reference/model.pt", weights_only=False)
    assert list(a["state_dict"]) == list(b["state_dict"])
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    hist = [line.split(",")[1:3] for line in (out / "history.csv").read_text().splitlines()]
    hist_ref = [line.split(",")[1:3] for line in (tmp_path / "reference/history.csv").read_text().splitlines()]
    assert hist == hist_ref  # train and validation losses of every epoch


# --------------------------------------------------------------------------- 2. dask worker killed


@pytest.fixture(scope="module")
def dask2():
    from gwnpe.stages.cluster import dask_client

    with dask_client({"cluster": "local", "n_workers": 2}, threads=2) as client:
        yield client


def test_killed_dask_worker_chunk_is_recomputed_and_bytes_unchanged(tiny_products, dask2, tmp_path):
    cfg, basis = tiny_products["config"], tiny_products["basis"]
    ref = tmp_path / "reference/training_set.h5"
    ts.run_training_set_stage(cfg, prior_path=cfg["priors"], basis_path=basis, out_path=ref, threads=2, progress=False, client=dask2)

    out = tmp_path / "killed/training_set.h5"
    chunk_dir = ts.chunk_dir_for(out)
    pids = dask2.run(os.getpid)  # worker address -> pid
    killed: dict = {}

    def kill_a_busy_worker():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            done = {p.name for p in chunk_dir.glob("chunk-*.h5")}
            if done:
                break
            time.sleep(0.01)
        else:
            return
        busy = []
        for address, keys in dask2.processing().items():
            lost = [str(k) for k in keys if f"chunk-{int(str(k).split('-')[1]):06d}.h5" not in done]
            sleeping = any(int(k.split("-")[1]) % 2 == 0 for k in lost)  # still seconds from finishing
            if lost and address in pids:
                busy.append((not sleeping, address, lost))
        if busy:
            _, address, lost = min(busy)
            killed.update(address=address, pid=pids[address], keys=lost, done=sorted(done))
            os.kill(pids[address], signal.SIGKILL)

    killer = threading.Thread(target=kill_a_busy_worker, daemon=True)
    killer.start()
    # even chunks sleep 2 s before generating: a wide window in which a worker holds an unfinished chunk
    summary = ts.run_training_set_stage(cfg, prior_path=cfg["priors"], basis_path=basis, out_path=out, threads=2, progress=False, client=dask2,
                                        fault=ts.FaultInjection(delay=2.0))
    killer.join(10)
    assert killed, "no worker was busy with an unfinished chunk when the first chunk file appeared"
    assert summary["n_chunks"] == 4

    # the killed worker's chunks were sent to a worker again
    def processing_transitions(dask_scheduler, keys=tuple(killed["keys"])):
        return {k: sum(1 for t in dask_scheduler.story(k) if t[0] == k and t[2] == "processing") for k in keys}

    again = dask2.run_on_scheduler(processing_transitions)
    assert max(again.values()) >= 2, (killed, again)
    # the nanny replaced the dead worker; nothing of the killed run is left next to the output
    dask2.wait_for_workers(2, timeout=60)
    assert killed["pid"] not in dask2.run(os.getpid).values()
    assert _files(out.parent) == ["training_set.h5"]
    assert sha256(out) == sha256(ref)


# --------------------------------------------------------------------------- 3. writers: temporary name + rename


class InjectedFault(Exception):
    """Raised by the test in the middle of a write."""


def _h5_fails_at(monkeypatch, call: int, seen: list, exc=None):
    """``h5py.Group.create_dataset`` (also behind ``group[name] = array``) raises at its ``call``-th use
    in this process, after flushing what was written so far (recorded in ``seen``)."""
    original = h5py.Group.create_dataset
    calls = []

    def create_dataset(self, name, *args, **kwargs):
        calls.append(name)
        if len(calls) == call:
            self.file.flush()
            written = Path(self.file.filename)
            seen.append((written, written.stat().st_size))
            raise exc or InjectedFault(f"injected failure writing dataset {name!r} of '{written}'")
        return original(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", create_dataset)


def _savetxt_fails(monkeypatch, seen: list, exc=None):
    """``numpy.savetxt`` writes the first lines, then raises."""

    def savetxt(fname, X, *args, header="", **kwargs):
        with open(fname, "w") as f:
            f.write(header + "\n" + "\n".join(" ".join(repr(float(v)) for v in row) for row in X[:10]))
        seen.append((Path(fname), Path(fname).stat().st_size))
        raise exc or InjectedFault(f"injected failure writing '{fname}'")

    monkeypatch.setattr(np, "savetxt", savetxt)


def _torch_save_fails(monkeypatch, seen: list, exc=None):
    """``torch.save`` writes a truncated file, then raises."""

    def save(obj, f, *args, **kwargs):
        if hasattr(f, "write"):  # an open file
            f.write(b"PK\x03\x04" + b"\0" * 1000)
            f.flush()
            f = f.name
        else:
            Path(f).write_bytes(b"PK\x03\x04" + b"\0" * 1000)
        seen.append((Path(f), Path(f).stat().st_size))
        raise exc or InjectedFault(f"injected failure writing '{f}'")

    monkeypatch.setattr(torch, "save", save)


@pytest.fixture(scope="module")
def untrained_model(untrained_model_path):
    from gwnpe.products.model import load_model

    return load_model(untrained_model_path)


def _write(writer: str, products: dict, out_dir: Path, request) -> Path:
    """Run the stage writer ``writer`` into ``out_dir``; returns its (main) output path."""
    cfg = copy.deepcopy(products["config"])
    if writer == "psd":
        from gwnpe.stages.psd import run_psd_stage

        run_psd_stage("H1", cfg, out_psd=out_dir / "H1_psd.txt", out_plot=out_dir / "H1_psd.png")
        return out_dir / "H1_psd.txt"
    if writer == "bank":
        from gwnpe.stages.bank import run_bank_stage
        from gwnpe.stages.settings import stage_settings

        cfg["bank"]["size"] = 20
        run_bank_stage(stage_settings(cfg, "bank"), out_path=out_dir / "bank.h5", progress=False)
        return out_dir / "bank.h5"
    if writer == "svd":
        from gwnpe.stages.settings import stage_settings
        from gwnpe.stages.svd import run_svd_stage

        run_svd_stage(stage_settings(cfg, "svd"), bank_path=products["bank"], psd_paths=products["psds"], out_path=out_dir / "basis.h5", plot_path=None, threads=1)
        return out_dir / "basis.h5"
    if writer == "training_set":
        client = request.getfixturevalue("dask2")
        ts.run_training_set_stage(cfg, prior_path=cfg["priors"], basis_path=products["basis"], out_path=out_dir / "training_set.h5", threads=2,
                                  progress=False, client=client)
        return out_dir / "training_set.h5"
    if writer == "injections":
        from gwnpe.stages.injections import run_injections_stage
        from gwnpe.stages.settings import stage_settings

        run_injections_stage(stage_settings(cfg, "injections"), psd_paths=products["psds"], out_path=out_dir / "injections.h5")
        return out_dir / "injections.h5"
    if writer == "model":
        from gwnpe.stages.settings import stage_settings
        
        cfg["training"]["epochs"] = 0
        train_model(cfg, out_dir, training_set=products["training_set"], basis=products["basis"], psds=products["psds"], threads=2)
        return out_dir / "model.pt"
    if writer == "result":
        from gwnpe.products.results import save_result

        model = request.getfixturevalue("untrained_model")
        samples = {k: np.linspace(0.1, 0.9, 20) for k in model.parameter_names}
        save_result(out_dir / "injection_0.hdf5", model, model_priors(model), samples, np.zeros(20), 0.5)
        return out_dir / "injection_0.hdf5"
    raise ValueError(writer)


#: writer -> how its write is broken half-way (h5py: at that create_dataset call, after the earlier ones)
_BREAKS = {
    "psd": ("savetxt", None),
    "bank": ("h5", 7),  # after the parameters, frequencies and h_plus
    "svd": ("h5", 4),  # after V, singular values and the reference ASD
    "training_set": ("h5", 7),  # after every chunk was merged into parameters, h_plus and h_cross
    "injections": ("h5", 12),  # after parameters, frequencies and part of the strain
    "model": ("torch", None),
    "result": ("h5", 5),  # bilby's HDF5 writer, after the first datasets
}


@pytest.mark.parametrize("writer", [
    "psd", "bank", "svd", "training_set", "injections", "model",
    "result",
])
def test_failed_write_leaves_neither_output_nor_temporary_file(writer, tiny_products, tmp_path, monkeypatch, request):
    out_dir = tmp_path / writer
    out_dir.mkdir()
    if writer in ("training_set", "result"):
        request.getfixturevalue({"training_set": "dask2", "result": "untrained_model"}[writer])  # set up before breaking
    how, call = _BREAKS[writer]
    seen: list = []
    {"savetxt": lambda: _savetxt_fails(monkeypatch, seen), "torch": lambda: _torch_save_fails(monkeypatch, seen),
     "h5": lambda: _h5_fails_at(monkeypatch, call, seen)}[how]()
    # the injected error itself, or a GwnpeError saying the write failed (bilby's writer swallows errors)
    with pytest.raises((InjectedFault, GwnpeError)):
        _write(writer, tiny_products, out_dir, request)
    assert len(seen) == 1, seen
    partial, size = seen[0]
    assert size > 0, "the failure should come after part of the file was written"
    final = {"psd": "H1_psd.txt", "bank": "bank.h5", "svd": "basis.h5", "training_set": "training_set.h5",
             "injections": "injections.h5", "model": "model.pt", "result": "injection_0.hdf5"}[writer]
    assert partial.parent == out_dir and partial.name != final, f"{writer} wrote '{partial}' in place"
    assert not partial.exists(), f"temporary file '{partial}' left behind"
    assert _files(out_dir) == [], f"{writer} left {_files(out_dir)}"


# --------------------------------------------------------------------------- 4. disk full, permissions


def _psd_write(out_dir: Path) -> Path:
    """Write a PSD file with the psd stage's writer (text, numpy.savetxt)."""
    from gwnpe.products.psd import write_psd

    path = out_dir / "H1_psd.txt"
    write_psd(path, np.linspace(0, 256, 1025), np.full(1025, 1e-46), {"stage": "psd"})
    return path


@pytest.mark.parametrize("case", ["disk_full_text", "disk_full_hdf5", "disk_full_real", "quota", "permission_denied",
                                  "read_only_fs", "read_only_dir", "parent_is_a_file"])
def test_disk_full_or_permission_error_names_the_output_and_the_fix(case, tiny_products, tmp_path, monkeypatch):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    advice = {"disk_full_text": "Free disk space", "disk_full_hdf5": "Free disk space", "disk_full_real": "Free disk space",
              "quota": "quota", "permission_denied": "Check the permissions", "read_only_fs": "read-only file system",
              "read_only_dir": "Check the permissions", "parent_is_a_file": "is a file, not a folder"}[case]
    simulated = {"disk_full_text": errno.ENOSPC, "quota": errno.EDQUOT, "permission_denied": errno.EACCES,
                 "read_only_fs": errno.EROFS}
    seen: list = []
    if case in simulated:
        code = simulated[case]
        _savetxt_fails(monkeypatch, seen, OSError(code, os.strerror(code)))
        write, path = _psd_write, out_dir / "H1_psd.txt"
    elif case == "disk_full_hdf5":
        from gwnpe.stages.bank import run_bank_stage
        from gwnpe.stages.settings import stage_settings

        cfg = copy.deepcopy(tiny_products["config"])
        cfg["bank"]["size"] = 20
        _h5_fails_at(monkeypatch, 7, seen, OSError(errno.ENOSPC, "Can't write data (file write failed: errno = 28, "
                                                   "error message = 'No space left on device')"))
        path = out_dir / "bank.h5"

        def write(_):
            run_bank_stage(stage_settings(cfg, "bank"), out_path=path, progress=False)
    elif case == "disk_full_real":
        # the kernel's ENOSPC: the writer's temporary name is a link to /dev/full
        if not Path("/dev/full").exists():
            pytest.skip("no /dev/full on this system")
        write, path = _psd_write, out_dir / "H1_psd.txt"
        (out_dir / f".{path.name}.tmp-{os.getpid()}").symlink_to("/dev/full")
    elif case == "read_only_dir":
        out_dir.chmod(0o555)
        try:  # root (CAP_DAC_OVERRIDE) writes through chmod, as in many CI containers
            (out_dir / "probe").touch()
        except PermissionError:
            pass
        else:
            out_dir.chmod(0o755)
            pytest.skip(f"chmod does not stop this user (euid {os.geteuid()}, e.g. root) from writing; the "
                        "permission_denied and parent_is_a_file cases cover the message")
        write, path = _psd_write, out_dir / "H1_psd.txt"
    else:  # parent_is_a_file
        (out_dir / "psd").write_text("a file where the output folder should be")
        path = out_dir / "psd" / "H1_psd.txt"

        def write(_):
            from gwnpe.products.psd import write_psd

            write_psd(path, np.linspace(0, 256, 1025), np.full(1025, 1e-46), {"stage": "psd"})
    before = [p for p in _files(out_dir) if not p.startswith(".")]
    try:
        with pytest.raises(GwnpeError) as err:
            write(out_dir)
    finally:
        out_dir.chmod(0o755)
    msg = str(err.value)
    assert isinstance(err.value, provenance.OutputWriteError) and isinstance(err.value, OSError)
    assert f"'{path}'" in msg and advice in msg and "[Errno" in msg, msg
    assert "\n" not in msg and "Traceback" not in msg
    assert not path.exists()
    assert _files(out_dir) == before, "a partial or temporary file was left behind"
    if seen:  # the writer had started writing (to a temporary name) before the error
        assert seen[0][0] != path and seen[0][1] > 0


# --------------------------------------------------------------------------- 5. Snakemake killed mid-job


@pytest.mark.slow
def test_snakemake_killed_mid_job_reruns_only_that_job(tmp_path):
    wd = copy_workflow(tmp_path)
    cfg = write_config(wd)
    base = [SNAKEMAKE, "--cores", "2", "--configfile", str(cfg), "--directory", str(wd), "--snakefile", str(wd / "Snakefile")]
    target = "results/tiny/training_set/training_set.h5"
    res_dir = wd / "results/tiny"
    chunk_dir = ts.chunk_dir_for(wd / target)

    def smk(*args):
        return subprocess.run([*base, *args], cwd=wd, capture_output=True, text=True, timeout=600)

    # 1st run: SIGKILL Snakemake and its jobs (one process group) once training_set has written a chunk
    log = tmp_path / "first.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen([*base, target], cwd=wd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while not any(chunk_dir.glob("chunk-*.h5")):
            assert proc.poll() is None, "snakemake ended before the training_set job wrote a chunk:\n" + log.read_text()[-5000:]
            assert time.monotonic() < deadline, "the training_set job never started"
            time.sleep(0.02)
    finally:
        _kill_group(proc)
    assert not (wd / target).exists()
    upstream = ["psd/H1_psd.txt", "psd/L1_psd.txt", "psd/H1_psd.png", "psd/L1_psd.png", "bank/bank.h5", "svd/basis.h5",
                "svd/mismatch.png"]
    mtimes = {rel: (res_dir / rel).stat().st_mtime_ns for rel in upstream}

    # Snakemake's lock outlives the kill: a plain rerun stops and says how to remove it
    res = smk(target)
    assert res.returncode != 0 and "--unlock" in res.stdout + res.stderr, res.stdout[-2000:] + res.stderr[-2000:]
    res = smk("--unlock", target)
    assert res.returncode == 0, res.stderr[-2000:]
    # The killed job left no output (outputs are written to temporary names), so Snakemake sees it as
    # missing, not incomplete: even without the profile's rerun-incomplete only that job is planned.
    res = smk("--dry-run", "--workflow-profile", "none", target)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert job_stats(res.stdout + res.stderr) == {"training_set": 1}

    res = smk(target)
    text = res.stdout + res.stderr
    assert res.returncode == 0, text[-5000:]
    assert job_stats(text) == {"training_set": 1}, text[-3000:]
    assert {rel: (res_dir / rel).stat().st_mtime_ns for rel in upstream} == mtimes  # nothing upstream redone
    data = load_training_set(wd / target)
    assert data.h_plus.shape == (400, 96) and np.isfinite(data.h_plus).all()
    assert _files(res_dir / "training_set") == ["training_set.h5"]  # the killed run's chunks are gone
    assert list((wd / ".snakemake/incomplete").iterdir()) == []
    res = smk("--dry-run", target)
    assert res.returncode == 0 and "Nothing to be done" in res.stdout + res.stderr
