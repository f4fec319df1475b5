"""Provenance: every output carries the settings that made it, its inputs' provenance (each
ancestor stored once), the seed and package versions. ``gwnpe ls FILE`` prints it. Also the
atomic writer every output goes through, and the code hash that reruns a stage when its library
code changes.

Nothing time- or host-dependent is stored, so the same config and seed give
byte-identical files.
"""

from __future__ import annotations

import ast
import contextlib
import errno
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import subprocess
from pathlib import Path

import numpy as np

from . import __version__
from .errors import GwnpeError, OutputWriteError

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


def _record_id(record: dict) -> str:
    return hashlib.sha256(dumps(record).encode()).hexdigest()[:16]


def text_reference(text: str) -> str:
    """How a stored text (e.g. a prior file) is referred to from settings: ``sha256:<hex digest of its UTF-8>``."""
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def make_provenance(stage: str, settings: dict, inputs: dict[str, tuple] | None = None,
                    texts: dict[str, str] | None = None) -> dict:
    """Provenance record of an output, with every ancestor stored once.

    Parameters
    ----------
    stage : str
        Name of the stage that made the output (e.g. ``"psd"``).
    settings : dict
        Every setting that shaped the output (including the seed).
    inputs : dict, optional
        Name -> ``(path, provenance or None)`` of the input files (see
        :func:`gwnpe.products.common.make_provenance`, which reads them).
    texts : dict, optional
        Setting name -> text (e.g. ``{"prior_file": <the prior file>}``). The setting holds
        :func:`text_reference` of the text, and the text itself is stored once in ``texts``.

    Returns
    -------
    dict
        ``stage``, ``settings``, ``inputs`` (name -> ``{"path", "record"}``, the id of the input's
        own record), ``versions``, ``records`` (id -> record of every ancestor: ``stage``,
        ``settings``, ``inputs``, ``versions``) and ``texts`` (sha256 -> text). Ids are content
        hashes, so an ancestor reached along several paths (a PSD used by the basis, the model and
        the injections) is stored once; :func:`input_provenance` walks back up the chain.
    """
    records: dict[str, dict] = {}
    store: dict[str, str] = {}
    refs = {}
    for name, (path, prov) in (inputs or {}).items():
        rid = None
        if prov is not None:
            records.update(prov.get("records", {}))
            store.update(prov.get("texts", {}))
            own = {k: prov.get(k) for k in RECORD_KEYS}
            rid = _record_id(own)
            records[rid] = own
        refs[name] = {"path": str(path), "record": rid}
    settings = _jsonable(settings)
    for name, text in (texts or {}).items():
        ref = text_reference(text)
        settings[name] = ref
        store[ref.split(":", 1)[1]] = text
    return {
        "stage": stage,
        "settings": settings,
        "inputs": refs,
        "versions": package_versions(),
        "records": dict(sorted(records.items())),
        "texts": dict(sorted(store.items())),
    }


#: Keys of one stage's own record (what a record id hashes).
RECORD_KEYS = ("stage", "settings", "inputs", "versions")


def input_provenance(prov: dict, name: str) -> dict | None:
    """The provenance of input ``name`` of ``prov`` (its record plus the shared records and texts), or None."""
    rid = prov["inputs"][name]["record"]
    if rid is None:
        return None
    return {**prov["records"][rid], "records": prov.get("records", {}), "texts": prov.get("texts", {})}


def stored_text(prov: dict, reference: str) -> str:
    """The text a setting refers to (a :func:`text_reference`)."""
    return prov["texts"][reference.split(":", 1)[1]]


def dumps(prov: dict) -> str:
    return json.dumps(prov, sort_keys=True)


def write_h5(h5obj, prov: dict) -> None:
    """Attach provenance to an open h5py File or Group."""
    h5obj.attrs[PROVENANCE_ATTR] = dumps(prov)


def text_header(prov: dict) -> str:
    """Provenance as one comment line for text outputs (numpy.loadtxt skips it)."""
    return TEXT_MARKER + dumps(prov)


# ----------------------------------------------------------------------------- code hashing


def _module_files() -> dict[str, Path]:
    """Dotted name -> source file of every module of the gwnpe package (found on disk, not imported)."""
    spec = importlib.util.find_spec("gwnpe")
    root = Path(list(spec.submodule_search_locations)[0])
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def gwnpe_imports(name: str, files: dict[str, Path] | None = None) -> set[str]:
    """gwnpe modules that module ``name`` imports anywhere in its source (function-level imports too).

    Found by parsing the source, so nothing is imported. ``from .x import y`` counts as an import
    of ``gwnpe...x.y`` when that is a module, else of ``gwnpe...x``; the packages that contain an
    imported module (their ``__init__`` runs first) count too.
    """
    files = files if files is not None else _module_files()
    path = files[name]
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            for a in node.names:
                found.add(f"{module}.{a.name}" if f"{module}.{a.name}" in files else module)
    out = set()
    for mod in found:
        parts = mod.split(".")
        out.update(".".join(parts[:i]) for i in range(1, len(parts) + 1) if ".".join(parts[:i]) in files)
    out.discard(name)
    return out


def module_closure(*modules: str) -> list[str]:
    """Sorted gwnpe modules that ``modules`` import, directly or not (themselves included)."""
    files = _module_files()
    todo = list(modules)
    seen = set()
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        if m not in files:
            raise ModuleNotFoundError(f"gwnpe module '{m}' not found")
        seen.add(m)
        todo.extend(gwnpe_imports(m, files) - seen)
    return sorted(seen)


def code_hash(*modules: str) -> str:
    """Hash of the source of ``modules`` and of every gwnpe module they import, directly or not.

    A rule passes it as a param, so that Snakemake reruns the rule when any library code it runs
    changes, and only then. The closure is computed from the sources (:func:`module_closure`),
    never listed by hand.
    """
    files = _module_files()
    h = hashlib.sha256()
    for name in module_closure(*modules):
        h.update(name.encode())
        h.update(files[name].read_bytes())
    return h.hexdigest()[:16]


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
