"""Provenance: every output carries the settings that made it, its inputs' provenance,
the seed and package versions. ``gwnpe ls FILE`` prints it.

Nothing time- or host-dependent is stored, so the same config and seed give
byte-identical files.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import importlib.metadata
import json
import os
import subprocess
from pathlib import Path

import numpy as np

from . import __version__
from .errors import GwnpeError

PROVENANCE_ATTR = "gwnpe_provenance"
TEXT_MARKER = "# gwnpe-provenance "

_PACKAGES = {
    "bilby": "bilby",
    "pycbc": "PyCBC",
    "torch": "torch",
    "numpy": "numpy",
    "scipy": "scipy",
    "h5py": "h5py",
    "dask": "dask",
    "distributed": "distributed",
    "zuko": "zuko",
    "snakemake": "snakemake",
}


@functools.cache
def package_versions() -> dict[str, str]:
    """Versions of gwnpe and the packages that shape its outputs."""
    out = {"gwnpe": __version__, "gwnpe_git": git_commit()}
    try:
        import lal
        import lalsimulation

        out["lal"] = lal.__version__
        out["lalsimulation"] = lalsimulation.__version__
    except ImportError:  # pragma: no cover - lalsuite is a hard dependency
        pass
    for key, dist in _PACKAGES.items():
        try:
            out[key] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[key] = None
    return out


@functools.cache
def git_commit() -> str | None:
    """``git describe --always --dirty`` of the gwnpe checkout, or None outside a checkout."""
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None
    try:
        res = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout.strip() or None


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def make_provenance(stage: str, settings: dict, inputs: dict[str, str | Path] | None = None) -> dict:
    """Provenance record of an output.

    Parameters
    ----------
    stage : str
        Name of the stage that made the output (e.g. ``"psd"``).
    settings : dict
        Every setting that shaped the output (including the seed).
    inputs : dict, optional
        Name -> path of input files; their own provenance is embedded.
    """
    return {
        "stage": stage,
        "settings": _jsonable(settings),
        "inputs": {name: {"path": str(path), "provenance": read_provenance(path)} for name, path in (inputs or {}).items()},
        "versions": package_versions(),
    }


def dumps(prov: dict) -> str:
    return json.dumps(prov, sort_keys=True)


def write_h5(h5obj, prov: dict) -> None:
    """Attach provenance to an open h5py File or Group."""
    h5obj.attrs[PROVENANCE_ATTR] = dumps(prov)


def text_header(prov: dict) -> str:
    """Provenance as one comment line for text outputs (numpy.loadtxt skips it)."""
    return TEXT_MARKER + dumps(prov)


def read_provenance(path: str | Path) -> dict | None:
    """Read the provenance of a gwnpe output (HDF5 or text); None if it has none."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"'{path}' does not exist")
    if path.suffix in (".h5", ".hdf5", ".hdf"):
        import h5py

        with h5py.File(path, "r") as f:
            raw = f.attrs.get(PROVENANCE_ATTR)
        return json.loads(raw) if raw is not None else None
    if path.suffix in (".txt", ".dat", ".csv"):
        with open(path) as f:
            for line in f:
                if line.startswith(TEXT_MARKER):
                    return json.loads(line[len(TEXT_MARKER):])
                if not line.startswith("#"):
                    break
        return None
    if path.suffix == ".pt":
        import torch

        obj = torch.load(path, map_location="cpu", weights_only=False)
        return obj.get("provenance") if isinstance(obj, dict) else None
    return None


def code_hash(*modules: str) -> str:
    """Hash of the source of gwnpe modules, so Snakemake reruns a rule when its library code changes."""
    import importlib.util

    h = hashlib.sha256()
    for name in sorted(modules):
        spec = importlib.util.find_spec(name)  # locates the file without importing it (fast at DAG build)
        if spec is None or spec.origin is None:
            raise ModuleNotFoundError(f"gwnpe module '{name}' not found")
        h.update(name.encode())
        h.update(Path(spec.origin).read_bytes())
    return h.hexdigest()[:16]


class OutputWriteError(GwnpeError, OSError):
    """An output could not be written: disk full, quota exceeded, no permission, read-only file
    system, or a file where a folder should be. The message names the output and what to do;
    ``errno`` is the original error's (also an :class:`OSError`, so ``except OSError`` still works).
    """


#: errno -> (what went wrong, what to do); ``{dir}`` is the output's folder.
_WRITE_FAILURES = {
    errno.ENOSPC: ("no space is left on the device",
                   "Free disk space on the file system of '{dir}' (see `df -h '{dir}'`), or write the results "
                   "to another disk, then rerun"),
    errno.EDQUOT: ("the disk quota is exceeded",
                   "Free space within your quota on the file system of '{dir}' (see `quota -s` or ask for a larger "
                   "quota), or write the results elsewhere, then rerun"),
    errno.EACCES: ("permission denied",
                   "Check the permissions of '{dir}' (`ls -ld '{dir}'`; `chmod u+w` or ask its owner), or write the "
                   "results to a folder you may write to, then rerun"),
    errno.EPERM: ("operation not permitted",
                  "Check the permissions of '{dir}' (`ls -ld '{dir}'`; `chmod u+w` or ask its owner), or write the "
                  "results to a folder you may write to, then rerun"),
    errno.EROFS: ("the file system is read-only",
                  "'{dir}' is on a read-only file system: write the results to a writable folder (or remount it "
                  "read-write), then rerun"),
    errno.ENOTDIR: ("a part of the path is a file, not a folder",
                    "Remove or rename that file, or choose another output folder, then rerun"),
}


def _write_error(path: Path, exc: OSError, tmp: Path | None = None) -> OutputWriteError | None:
    """An :class:`OutputWriteError` for ``exc`` raised while writing ``path``; None for other errors
    (another errno, or an error about another file, e.g. an input read while writing)."""
    if isinstance(exc, GwnpeError):
        return None
    code = exc.errno
    if code == errno.EEXIST and tmp is None:  # creating the folder: a file is where a folder should be
        code = errno.ENOTDIR
    if code not in _WRITE_FAILURES:
        return None
    ours = {str(path), str(path.parent), *(str(p) for p in path.parents)}
    if tmp is not None:
        ours.add(str(tmp))
    if exc.filename is not None and os.fspath(exc.filename) not in ours:
        return None
    what, fix = _WRITE_FAILURES[code]
    detail = str(exc).splitlines()[0]
    err = OutputWriteError(
        f"cannot write '{path}': {what} ({detail}). {fix.format(dir=path.parent)}. "
        "No partial file was left behind."
    )
    err.errno = exc.errno
    err.path = path
    return err


@contextlib.contextmanager
def atomic_output(path: str | Path):
    """Yield a temporary path next to ``path``; move it into place only on success.

    A stage that fails half-way leaves no file that a later run could take for a finished one:
    the temporary file is removed whatever the error. A full disk (``ENOSPC``, ``EDQUOT``), a
    permission error (``EACCES``, ``EPERM``), a read-only file system (``EROFS``) or a file
    where a folder should be raise :class:`OutputWriteError`, whose message names ``path`` and
    what to do.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        err = _write_error(path, exc)
        if err is None:
            raise
        raise err from exc
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        err = _write_error(path, exc, tmp)
        if err is None:
            raise
        raise err from exc
    finally:
        try:
            if tmp.exists() or tmp.is_symlink():
                tmp.unlink()
        except OSError:  # cleaning up must not hide the error that stopped the write
            pass


@contextlib.contextmanager
def open_stage_output(path: str | Path, what: str, stage: str, error: type[Exception]):
    """Open a stage's HDF5 output for reading; a missing, unreadable or incomplete file raises
    ``error`` naming the file and the stage to (re)run."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise error(f"{what} '{path}' does not exist; run the {stage} stage first.")
    try:
        with h5py.File(path, "r") as f:
            yield f
    except (OSError, KeyError) as exc:
        raise error(f"{what} '{path}' is unreadable or incomplete ({exc}); delete it and rerun the {stage} stage.") from exc
