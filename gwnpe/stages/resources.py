"""Memory and disk a run will need, estimated from its config before any job starts.

A config whose bank or training set cannot fit would otherwise run for minutes or hours and end in a
``MemoryError`` (or a full disk) inside a job. The estimates follow what each stage holds: the bank
stage keeps every waveform (h+ and hx, complex128, on the band's grid) in memory and writes them; the
basis stage reads the bank and builds the time-shifted, whitened rows of the same size beside it; the
training set is stored as complex64 reduced-basis coefficients and loaded whole by the train stage;
the PSD stage holds its noise series; the posteriors are ``count x n_samples`` floats. They are lower
bounds (interpreter, libraries and temporary copies come on top), so a refusal is certain to be right.

Limits: ``limits.memory_gb`` (default: this machine's memory, or its cgroup limit when lower) and
``limits.disk_gb`` (default: the free space where ``results/`` lives). On a cluster whose nodes are
larger than the machine that starts the workflow, set ``limits.memory_gb`` to a node's memory.
Imported by :mod:`gwnpe.stages.workflow`; it imports neither torch nor bilby.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

GB = 1e9
_COMPLEX128 = 16
_COMPLEX64 = 8
_FLOAT64 = 8
#: Sized parameters per posterior sample besides the sampled ones (derived masses, log likelihood ...).
_EXTRA_COLUMNS = 8


@dataclass(frozen=True)
class Estimate:
    """One stage's memory (largest single job) and disk (what it writes), and the keys that drive them."""

    stage: str
    memory: float
    disk: float
    keys: str


def _n_params(config: dict) -> int:
    from ..gw.priors import load_priors, sampled_keys

    return len(sampled_keys(load_priors(config["priors"])))


def estimate_resources(config: dict) -> list[Estimate]:
    """Per-stage estimates [bytes] for a validated config (defaults filled in)."""
    from ..gw.domain import build_domain

    n_bins = len(build_domain(config).frequencies)
    n_ifo = len(config["detectors"])
    bank_n = int(config["bank"]["size"])
    bank = bank_n * n_bins * 2 * _COMPLEX128
    psd_samples = float(config["psd"]["duration"]) * float(config["domain"]["sampling_frequency"])
    k = int(config["svd"]["size"])
    ts_n = int(config["training_set"]["size"])
    ts = ts_n * k * 2 * _COMPLEX64
    chunk = int(config["training_set"]["chunk_size"]) * n_bins * 2 * _COMPLEX128
    n_par = _n_params(config) + _EXTRA_COLUMNS
    inj = config["injections"]
    posteriors = float(inj["count"]) * int(inj["n_samples"]) * n_par * _FLOAT64
    return [
        # the noise series and its Welch segments (x3), one detector per job
        Estimate("psd", 3 * psd_samples * _FLOAT64 if config["psd"]["source"] != "files" else 0.0,
                 n_ifo * n_bins * 3 * _FLOAT64, "psd.duration, domain.sampling_frequency"),
        Estimate("bank", bank, bank, "bank.size, domain (frequency bins)"),
        # the bank plus its whitened, time-shifted rows (the SVD's input) of the same size
        Estimate("svd", 2 * bank, k * n_bins * _COMPLEX128, "bank.size, svd.size"),
        # each dask worker holds one chunk's waveforms; the merged file holds the coefficients
        Estimate("training_set", chunk, ts, "training_set.size, training_set.chunk_size, svd.size"),
        Estimate("train", ts, 0.0, "training_set.size, svd.size"),
        Estimate("posteriors", float(inj["n_samples"]) * int(inj["batch_events"]) * n_par * _FLOAT64, posteriors,
                 "injections.count, injections.n_samples"),
    ]


def _cgroup_limit() -> float | None:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            return float(text)
    return None


def machine_memory() -> float:
    """This machine's memory [bytes]: physical memory, or the cgroup's limit when that is lower."""
    total = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    limit = _cgroup_limit()
    return min(total, limit) if limit else total


def free_disk(path: str | Path = "results") -> float:
    """Free space [bytes] on the filesystem that holds ``path`` (its nearest existing ancestor)."""
    p = Path(path).absolute()
    while not p.exists():
        p = p.parent
    return float(shutil.disk_usage(p).free)


def limits(config: dict) -> tuple[float, float, str, str]:
    """(memory, disk) the run may use [bytes], with a word on where each comes from."""
    lim = config.get("limits") or {}
    if lim.get("memory_gb") is not None:
        memory, mem_src = float(lim["memory_gb"]) * GB, "limits.memory_gb"
    else:
        memory, mem_src = machine_memory(), "this machine"
    if lim.get("disk_gb") is not None:
        disk, disk_src = float(lim["disk_gb"]) * GB, "limits.disk_gb"
    else:
        disk, disk_src = free_disk(Path("results") / str(config["run"])), "free under results/"
    return memory, disk, mem_src, disk_src


def _fmt(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n / 1e3:.3g} kB"


def resource_table(config: dict) -> str:
    """The estimates as a text table (``gwnpe check`` prints it)."""
    memory, disk, mem_src, disk_src = limits(config)
    rows = [f"{'stage':<14}{'memory (one job)':>18}{'disk':>12}"]
    estimates = estimate_resources(config)
    rows += [f"{e.stage:<14}{_fmt(e.memory):>18}{_fmt(e.disk):>12}" for e in estimates]
    total = sum(e.disk for e in estimates)
    rows.append(f"{'total disk':<14}{'':>18}{_fmt(total):>12}")
    rows.append(f"limits: memory {_fmt(memory)} ({mem_src}), disk {_fmt(disk)} ({disk_src})")
    return "\n".join(rows)


def check_resources(config: dict) -> None:
    """Refuse a config whose largest job needs more memory, or whose outputs need more disk, than allowed.

    Raises
    ------
    ConfigError
        Naming the stage, the estimate, the limit, the keys that drive it and how to proceed.
    """
    memory, disk, mem_src, disk_src = limits(config)
    estimates = estimate_resources(config)
    for e in estimates:
        if e.memory > memory:
            raise ConfigError(
                f"the {e.stage} stage would need at least {_fmt(e.memory)} of memory ({e.keys}), more than the "
                f"{_fmt(memory)} of {mem_src}. Lower {e.keys.split(',')[0]}; if the jobs run on larger machines "
                "(cluster nodes), set limits.memory_gb to their memory in GB."
            )
    total = sum(e.disk for e in estimates)
    if total > disk:
        worst = max(estimates, key=lambda e: e.disk)
        raise ConfigError(
            f"the run's outputs would need at least {_fmt(total)} of disk ({_fmt(worst.disk)} in the {worst.stage} "
            f"stage: {worst.keys}), more than the {_fmt(disk)} {'of ' + disk_src if disk_src.startswith('limits') else disk_src}. "
            f"Lower {worst.keys.split(',')[0]}, free space, or set limits.disk_gb."
        )
