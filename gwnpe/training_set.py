"""Training set: intrinsic waveforms generated in chunks on dask, stored as reduced-basis coefficients.

Data flow
---------
``training_set.size`` = N waveforms are split into chunks of ``training_set.chunk_size``
(the last one smaller). Chunk ``c`` draws its intrinsic parameters from its own
random stream ``stage_rng(seed, "training_set", c)``, generates h+ and hx at
``waveform.reference_distance`` (LAL-refused draws are redrawn from the same
stream, see :func:`gwnpe.waveforms.generate_from_prior`), compresses them with
the reduced basis (``c = whiten(h) @ V``, complex64) and writes its own chunk
file on the worker, in ``.chunks-<name>/`` next to the output (on Slurm that
folder must be on a shared file system). Tasks return only small metadata, so
full waveforms never travel back to the client, and the basis is read once per
worker process (cached by path), not shipped with every task.

The client then copies the chunk files *in chunk order*, one at a time, into
pre-allocated datasets of the output, so its memory is set by ``chunk_size``,
not by N, and the output bytes depend only on the seed and the science
settings: not on the number of workers, the completion order or retries.

Layout of ``training_set.h5``
-----------------------------
``parameters/<name>``
    (N,) float64, the sampled intrinsic parameters (``intrinsic_keys`` of the prior file).
``h_plus``, ``h_cross``
    (N, K) complex64 reduced-basis coefficients of the whitened polarizations
    [dimensionless], at ``reference_distance`` [Mpc].
``failures``
    scalar UTF-8 string dataset: JSON list of every LAL-refused draw
    (``chunk``, ``index`` in the training set the redraw filled, ``reason``, ``parameters``).
attributes
    ``n``, ``chunk_size``, ``n_chunks``, ``basis_size``, ``delta_f`` [Hz],
    ``reference_distance`` [Mpc], ``approximant``, ``intrinsic_parameters`` and
    ``fixed_parameters`` (JSON), and ``gwnpe_provenance`` (settings without the
    runtime ``dask`` section, the prior file's text, the basis' provenance, versions).

No timestamps are stored (``track_times=False``): the same seed and settings give a
byte-identical file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import BasisError, GwnpeError, WaveformError

logger = logging.getLogger(__name__)

#: Name of the random stream of the stage (with the chunk index as extra entropy).
STREAM = "training_set"


class TrainingSetError(GwnpeError):
    """A training-set chunk failed after its retries, or a chunk file is inconsistent."""


# --------------------------------------------------------------------------- worker side


@dataclass(frozen=True)
class FaultInjection:
    """Test-only fault injection for chunk tasks; never set it in production runs.

    Parameters
    ----------
    fail_chunk : int, optional
        Chunk index whose task raises ``RuntimeError`` after writing its chunk file.
    fail_times : int, optional
        Attempts of ``fail_chunk`` that fail (then it succeeds); None fails every attempt.
        Attempts are counted with marker files in ``state_dir``, so counting works
        across worker processes.
    state_dir : str, optional
        Folder for the attempt markers; required with ``fail_times``.
    delay : float
        Seconds [s] that even-numbered chunks sleep before generating, to change the
        completion order.
    """

    fail_chunk: int | None = None
    fail_times: int | None = None
    state_dir: str | None = None
    delay: float = 0.0

    def before(self, chunk: int) -> None:
        if self.delay and chunk % 2 == 0:
            time.sleep(self.delay)

    def after(self, chunk: int) -> None:
        if self.fail_chunk is None or chunk != self.fail_chunk:
            return
        if self.fail_times is not None:
            state = Path(self.state_dir)
            attempts = len(list(state.glob(f"attempt-{chunk}-*")))
            (state / f"attempt-{chunk}-{uuid.uuid4().hex}").touch()
            if attempts >= self.fail_times:
                return
        raise RuntimeError(f"injected fault in chunk {chunk}")


@dataclass(frozen=True)
class ChunkTask:
    """Everything a worker needs to generate one chunk (small: paths and settings only).

    Attributes
    ----------
    index : int
        Chunk index ``c``; its random stream is ``stage_rng(seed, "training_set", c)``.
    start, n : int
        First training-set row of the chunk and its number of waveforms.
    seed : int
        Master seed of the config.
    generator_settings : dict
        ``{"domain": ..., "waveform": ...}`` config sections.
    prior_path, basis_path, chunk_dir : str
        Prior file, ``basis.h5``, and the folder for chunk files.
    max_failures : int
        Refused draws tolerated in this chunk (more raise a WaveformError).
    fault : FaultInjection, optional
        Test-only.
    """

    index: int
    start: int
    n: int
    seed: int
    generator_settings: dict
    prior_path: str
    basis_path: str
    chunk_dir: str
    max_failures: int
    fault: FaultInjection | None = field(default=None)

    @property
    def path(self) -> Path:
        return Path(self.chunk_dir) / f"chunk-{self.index:06d}.h5"


#: Per-process caches (worker side): one basis and one prior file, keyed by path and mtime.
_BASIS_CACHE: dict = {}
_PRIOR_CACHE: dict = {}


def _file_key(path: str) -> tuple:
    st = os.stat(path)
    return (os.path.realpath(path), st.st_mtime_ns, st.st_size)


def cached_basis(path: str):
    """The :class:`~gwnpe.svd.ReducedBasis` at ``path``, read once per process."""
    from .svd import load_basis

    key = _file_key(path)
    if key not in _BASIS_CACHE:
        _BASIS_CACHE.clear()
        _BASIS_CACHE[key] = load_basis(path)
    return _BASIS_CACHE[key]


def cached_priors(path: str, approximant: str):
    """The prior file at ``path``, parsed once per process."""
    from .priors import load_priors

    key = (*_file_key(path), approximant)
    if key not in _PRIOR_CACHE:
        _PRIOR_CACHE.clear()
        _PRIOR_CACHE[key] = load_priors(path, approximant=approximant)
    return _PRIOR_CACHE[key]


def generate_chunk(task: ChunkTask) -> dict:
    """Generate, compress and write one chunk (runs on a dask worker).

    Returns
    -------
    dict
        ``chunk``, ``start``, ``n``, ``path``, ``seconds`` (generation wall time [s]),
        ``failures`` (refused draws, indices relative to the chunk) and ``error``
        (None, or the WaveformError text when the chunk alone exceeds its allowance:
        deterministic, so it is returned rather than retried).
    """
    import h5py

    from .priors import intrinsic_keys
    from .seeding import stage_rng
    from .waveforms import build_waveform_generator, generate_from_prior

    t0 = time.perf_counter()
    if task.fault is not None:
        task.fault.before(task.index)
    generator = build_waveform_generator(task.generator_settings)
    priors = cached_priors(task.prior_path, generator.approximant)
    keys = intrinsic_keys(priors)
    basis = cached_basis(task.basis_path)
    rng = stage_rng(task.seed, STREAM, task.index)
    meta = {"chunk": task.index, "start": task.start, "n": task.n, "path": str(task.path), "failures": [], "error": None}
    try:
        params, hp, hc, failures = generate_from_prior(generator, priors, keys, task.n, rng, task.max_failures)
    except WaveformError as exc:
        meta["error"] = str(exc)
        return meta
    cp = basis.compress(hp, dtype=np.complex64)
    del hp
    cc = basis.compress(hc, dtype=np.complex64)
    del hc
    tmp = task.path.with_name(f".{task.path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with h5py.File(tmp, "w", track_order=True) as f:
            grp = f.create_group("parameters", track_order=True)
            for k in keys:
                grp.create_dataset(k, data=params[k], track_times=False)
            f.create_dataset("h_plus", data=cp, track_times=False)
            f.create_dataset("h_cross", data=cc, track_times=False)
        os.replace(tmp, task.path)
    finally:
        if tmp.exists():
            tmp.unlink()
    if task.fault is not None:
        task.fault.after(task.index)
    meta["failures"] = failures
    meta["seconds"] = time.perf_counter() - t0
    return meta


# --------------------------------------------------------------------------- client side


def chunk_bounds(n: int, chunk_size: int) -> list[tuple[int, int]]:
    """``(start, n_c)`` of each chunk: ``n`` rows in chunks of ``chunk_size`` (the last smaller)."""
    return [(s, min(chunk_size, n - s)) for s in range(0, n, chunk_size)]


def chunk_dir_for(out_path: str | Path) -> Path:
    """Folder of the chunk files of ``out_path`` (next to it, so workers and client share it)."""
    out_path = Path(out_path)
    return out_path.parent / f".chunks-{out_path.name}"


def provenance_settings(settings: dict, prior_text: str, keys: list[str]) -> dict:
    """Settings recorded in the output: those that shape its bytes (not the runtime ``dask`` section)."""
    out = {k: settings[k] for k in ("seed", "priors", "domain", "waveform", "training_set") if k in settings}
    return {**out, "prior_file": prior_text, "intrinsic_parameters": list(keys)}


def _check_basis(basis_path: Path, frequencies: np.ndarray) -> tuple[int, float]:
    """Basis size K and delta_f, after checking it lies on the domain's band (reads no V)."""
    import h5py

    if not basis_path.is_file():
        raise BasisError(f"basis file '{basis_path}' does not exist; run the svd stage first.")
    try:
        with h5py.File(basis_path, "r") as f:
            n_bins, k = f["V"].shape
            freqs = f["frequencies"][...]
            delta_f = float(f.attrs["delta_f"])
    except (OSError, KeyError) as exc:
        raise BasisError(f"basis file '{basis_path}' is unreadable or incomplete ({exc}); rerun the svd stage.") from exc
    if n_bins != len(frequencies) or len(freqs) != len(frequencies) or not np.allclose(freqs, frequencies):
        raise BasisError(
            f"basis '{basis_path}' is on {len(freqs)} bins ({freqs[0]:g}-{freqs[-1]:g} Hz) but the domain's band has "
            f"{len(frequencies)} bins ({frequencies[0]:g}-{frequencies[-1]:g} Hz); rerun the svd stage with this config's domain."
        )
    return int(k), delta_f


def _first_parameters(priors, keys, seed: int, index: int, n: int) -> dict:
    """First parameter set of chunk ``index``, regenerated from its stream (for error messages)."""
    from .priors import draw
    from .seeding import stage_rng

    try:
        p = draw(priors, keys, n, stage_rng(seed, STREAM, index))
        return {k: float(v[0]) for k, v in p.items()}
    except Exception as exc:  # reporting must not hide the original error
        return {"unavailable": str(exc)}


def _read_chunk(path: str, keys: list[str], n: int, k: int) -> tuple[dict, np.ndarray, np.ndarray]:
    """Read one chunk file (client side), checking its shapes."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            params = {key: f["parameters"][key][...] for key in keys}
            hp = f["h_plus"][...]
            hc = f["h_cross"][...]
    except (OSError, KeyError) as exc:
        raise TrainingSetError(f"chunk file '{path}' is unreadable or incomplete ({exc}).") from exc
    if hp.shape != (n, k) or hc.shape != (n, k) or any(v.shape != (n,) for v in params.values()):
        raise TrainingSetError(f"chunk file '{path}' has shape {hp.shape}, expected ({n}, {k}).")
    return params, hp, hc


def _run_chunks(client, tasks: list[ChunkTask], retries: int, allowed: int, n_total: int, priors, keys, progress: bool) -> list[dict]:
    """Submit the chunk tasks and collect their metadata in chunk order; fail fast."""
    from distributed import as_completed
    from tqdm import tqdm

    token = uuid.uuid4().hex[:8]  # unique keys: an external scheduler may serve several runs
    futures = {
        client.submit(generate_chunk, task, retries=retries, pure=False, key=f"chunk-{task.index}-{token}"): task
        for task in tasks
    }
    meta: list[dict | None] = [None] * len(tasks)
    n_failed = 0
    bar = tqdm(total=n_total, unit="wf", desc="training set", disable=not progress, mininterval=2)
    try:
        for fut in as_completed(list(futures)):
            task = futures[fut]
            try:
                m = fut.result()
            except Exception as exc:
                first = _first_parameters(priors, keys, task.seed, task.index, task.n)
                raise TrainingSetError(
                    f"training-set chunk {task.index} (rows {task.start}-{task.start + task.n - 1}, {task.n} waveforms, "
                    f"random stream stage_rng(seed={task.seed}, '{STREAM}', {task.index})) failed after "
                    f"{retries} retries: {type(exc).__name__}: {exc}. First parameters of the chunk: {first}. "
                    f"Rerun to retry; to debug, run gwnpe.training_set.generate_chunk on this chunk alone."
                ) from exc
            finally:
                fut.release()
            if m["error"] is not None:
                raise WaveformError(f"training-set chunk {task.index} ({task.n} waveforms): {m['error']}")
            meta[task.index] = m
            n_failed += len(m["failures"])
            if n_failed > allowed:
                _raise_too_many_failures(meta, n_failed, allowed, n_total)
            bar.update(m["n"])
    finally:
        bar.close()
        pending = [f for f in futures if not f.done()]
        if pending:
            client.cancel(pending)
    return meta  # type: ignore[return-value]


def _global_failures(meta: list[dict | None]) -> list[dict]:
    """Failure records of all (finished) chunks in chunk order, with training-set row indices."""
    out = []
    for m in meta:
        if m is None:
            continue
        for rec in m["failures"]:
            out.append({"chunk": m["chunk"], "index": m["start"] + rec["index"], "reason": rec["reason"], "parameters": rec["parameters"]})
    return out


def _raise_too_many_failures(meta, n_failed: int, allowed: int, n_total: int):
    first = _global_failures(meta)[0]
    raise WaveformError(
        f"{n_failed} of {n_total} training-set draws were refused by LAL, more than the {allowed} allowed by "
        f"waveform.max_failure_fraction. First failure (chunk {first['chunk']}, row {first['index']}): "
        f"{first['reason']} at {first['parameters']}. Narrow the prior to where the approximant is valid, "
        "or raise waveform.max_failure_fraction."
    )


def run_training_set_stage(
    settings: dict,
    prior_path: str | Path,
    basis_path: str | Path,
    out_path: str | Path,
    threads: int,
    progress: bool = True,
    *,
    client=None,
    fault: FaultInjection | None = None,
) -> dict:
    """Generate the training set on dask and write ``training_set.h5`` (layout in the module docstring).

    Parameters
    ----------
    settings : dict
        Validated config sections ``seed``, ``priors``, ``domain``, ``waveform``,
        ``training_set`` and ``dask``.
    prior_path : str or Path
        bilby prior file (normally ``settings["priors"]``).
    basis_path : str or Path
        ``basis.h5`` of the svd stage.
    out_path : str or Path
        Output file; written atomically (a failed run leaves none).
    threads : int
        Threads of the calling job: the number of local workers when ``dask.n_workers`` is null.
    progress : bool
        Show a progress bar.
    client : distributed.Client, optional
        Use this client instead of starting the configured cluster (it is not closed).
    fault : FaultInjection, optional
        Test-only fault injection.

    Returns
    -------
    dict
        ``n``, ``n_chunks``, ``basis_size``, ``failures`` (count), ``failure_fraction``,
        ``workers``, ``generation_seconds``, ``merge_seconds``, ``throughput`` [waveforms/s].

    Raises
    ------
    TrainingSetError
        A chunk still fails after ``training_set.retries`` retries (the message names
        the chunk, its random stream, its size and first parameters, and the error).
    WaveformError
        More than ``waveform.max_failure_fraction`` of the draws were refused by LAL.
    BasisError
        The basis is missing or on another frequency grid.
    """
    import h5py

    from . import provenance
    from .cluster import dask_client
    from .priors import fixed_parameters, intrinsic_keys, load_priors
    from .waveforms import build_waveform_generator, max_failures

    prior_path, basis_path, out_path = Path(prior_path), Path(basis_path), Path(out_path)
    ts = settings["training_set"]
    n_total, chunk_size, retries = int(ts["size"]), int(ts["chunk_size"]), int(ts["retries"])
    generator = build_waveform_generator(settings)
    priors = load_priors(prior_path, approximant=generator.approximant)
    keys = intrinsic_keys(priors)
    if not keys:
        raise GwnpeError(f"prior file '{prior_path}' samples no intrinsic parameter; every training waveform would be the same.")
    k, delta_f = _check_basis(basis_path, generator.domain.frequencies)
    allowed = max_failures(settings["waveform"]["max_failure_fraction"], n_total)
    bounds = chunk_bounds(n_total, chunk_size)
    chunk_dir = chunk_dir_for(out_path)
    gen_settings = {"domain": settings["domain"], "waveform": settings["waveform"]}
    tasks = [
        ChunkTask(
            index=c, start=s, n=n, seed=int(settings["seed"]), generator_settings=gen_settings,
            prior_path=str(prior_path.resolve()), basis_path=str(basis_path.resolve()), chunk_dir=str(chunk_dir.resolve()),
            max_failures=min(n, allowed), fault=fault,
        )
        for c, (s, n) in enumerate(bounds)
    ]
    logger.info(
        "training set: %d waveforms of %s over %s in %d chunks of <= %d, basis K = %d, %d LAL refusals allowed",
        n_total, generator.approximant, keys, len(tasks), chunk_size, k, allowed,
    )
    prov = provenance.make_provenance(
        "training_set", provenance_settings(settings, prior_path.read_text(), keys), inputs={"basis": basis_path}
    )

    shutil.rmtree(chunk_dir, ignore_errors=True)  # never reuse chunks of an interrupted run
    chunk_dir.mkdir(parents=True)
    try:
        with contextlib.ExitStack() as stack:
            if client is None:
                client = stack.enter_context(dask_client(settings["dask"], threads))
            workers = len(client.scheduler_info().get("workers", {}))
            t0 = time.perf_counter()
            meta = _run_chunks(client, tasks, retries, allowed, n_total, priors, keys, progress)
            t_gen = time.perf_counter() - t0
        failures = _global_failures(meta)
        if len(failures) > allowed:  # _run_chunks fails fast; kept as the final guard
            _raise_too_many_failures(meta, len(failures), allowed, n_total)
        rate = n_total / t_gen if t_gen > 0 else float("inf")
        logger.info(
            "training set: %d waveforms in %d chunks on %d workers in %.1f s (%.1f waveforms/s); %d draws refused by LAL and redrawn",
            n_total, len(tasks), workers, t_gen, rate, len(failures),
        )
        if failures:
            logger.warning("training set: first refused draw (chunk %d): %s at %s", failures[0]["chunk"], failures[0]["reason"], failures[0]["parameters"])

        t1 = time.perf_counter()
        with provenance.atomic_output(out_path) as tmp:
            with h5py.File(tmp, "w", track_order=True) as f:
                grp = f.create_group("parameters", track_order=True)
                pds = {key: grp.create_dataset(key, shape=(n_total,), dtype="f8", track_times=False) for key in keys}
                hp_ds = f.create_dataset("h_plus", shape=(n_total, k), dtype="c8", track_times=False)
                hc_ds = f.create_dataset("h_cross", shape=(n_total, k), dtype="c8", track_times=False)
                for m in meta:  # chunk order, one chunk in memory at a time
                    params, hp, hc = _read_chunk(m["path"], keys, m["n"], k)
                    rows = slice(m["start"], m["start"] + m["n"])
                    for key in keys:
                        pds[key][rows] = params[key]
                    hp_ds[rows] = hp
                    hc_ds[rows] = hc
                    del params, hp, hc
                    os.unlink(m["path"])
                f.create_dataset("failures", data=json.dumps(failures), dtype=h5py.string_dtype("utf-8"), track_times=False)
                f.attrs["n"] = n_total
                f.attrs["chunk_size"] = chunk_size
                f.attrs["n_chunks"] = len(tasks)
                f.attrs["basis_size"] = k
                f.attrs["delta_f"] = delta_f
                f.attrs["reference_distance"] = generator.reference_distance
                f.attrs["approximant"] = generator.approximant
                f.attrs["intrinsic_parameters"] = json.dumps(keys)
                f.attrs["fixed_parameters"] = json.dumps(fixed_parameters(priors), sort_keys=True)
                provenance.write_h5(f, prov)
        t_merge = time.perf_counter() - t1
    finally:
        shutil.rmtree(chunk_dir, ignore_errors=True)
    logger.info("training set: merged into '%s' in %.1f s", out_path, t_merge)
    return {
        "n": n_total,
        "n_chunks": len(tasks),
        "basis_size": k,
        "failures": len(failures),
        "failure_fraction": len(failures) / n_total,
        "workers": workers,
        "generation_seconds": t_gen,
        "merge_seconds": t_merge,
        "throughput": rate,
    }


@dataclass
class TrainingSet:
    """A training set read by :func:`load_training_set`.

    Attributes
    ----------
    parameters : dict of (N,) arrays (or h5py datasets when lazy)
    h_plus, h_cross : (N, K) complex64 arrays (or h5py datasets when lazy)
        Reduced-basis coefficients of the whitened polarizations at ``reference_distance``.
    failures : list of dict
        Draws refused by LAL and redrawn.
    attrs : dict
        File attributes (``basis_size``, ``delta_f`` [Hz], ``reference_distance`` [Mpc], ...).
    """

    parameters: dict
    h_plus: object
    h_cross: object
    failures: list
    attrs: dict
    _file: object = None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def load_training_set(path: str | Path, lazy: bool = False) -> TrainingSet:
    """Read ``training_set.h5``.

    Parameters
    ----------
    path : str or Path
    lazy : bool
        Return h5py datasets (read on indexing, memory-light) and keep the file open;
        close it with :meth:`TrainingSet.close` or a ``with`` block.
    """
    import h5py

    from .provenance import PROVENANCE_ATTR

    path = Path(path)
    if not path.is_file():
        raise TrainingSetError(f"training set '{path}' does not exist; run the training_set stage first.")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise TrainingSetError(f"training set '{path}' is unreadable or truncated ({exc}); delete it and rerun the "
                               "training_set stage.") from exc
    try:
        keys = json.loads(f.attrs["intrinsic_parameters"])
        attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items() if k != PROVENANCE_ATTR}
        raw = f["failures"][()]
        failures = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        if lazy:
            return TrainingSet({k: f["parameters"][k] for k in keys}, f["h_plus"], f["h_cross"], failures, attrs, f)
        out = TrainingSet({k: f["parameters"][k][...] for k in keys}, f["h_plus"][...], f["h_cross"][...], failures, attrs)
    except (KeyError, OSError) as exc:
        f.close()
        raise TrainingSetError(f"training set '{path}' is incomplete ({exc}); delete it and rerun the training_set stage.") from exc
    f.close()
    return out
