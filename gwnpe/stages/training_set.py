"""Training set: intrinsic waveforms generated in chunks on dask, stored as reduced-basis coefficients.

Data flow
---------
``training_set.size`` = N waveforms are split into chunks of ``training_set.chunk_size``
(the last one smaller). Chunk ``c`` draws its intrinsic parameters from its own
random stream ``stage_rng(seed, "training_set", c)``, generates h+ and hx at
``waveform.reference_distance`` (LAL-refused draws are redrawn from the same
stream, see :func:`gwnpe.gw.waveforms.generate_from_prior`), compresses them with
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

from ..products.basis import basis_shape, load_basis
from ..products.common import make_provenance
from ..products.training_set import write_chunk, write_training_set
from ..errors import GwnpeError, TrainingSetError, WaveformError
from ..gw.priors import draw, fixed_parameters, intrinsic_keys, load_priors
from ..gw.waveforms import build_waveform_generator, generate_from_prior, max_failures
from ..seeding import stage_rng
from .cluster import dask_client
from .settings import stage_settings

logger = logging.getLogger(__name__)

#: Name of the random stream of the stage (with the chunk index as extra entropy).
STREAM = "training_set"


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
    """The :class:`~gwnpe.gw.svd.ReducedBasis` at ``path``, read once per process."""
    key = _file_key(path)
    if key not in _BASIS_CACHE:
        _BASIS_CACHE.clear()
        _BASIS_CACHE[key] = load_basis(path)
    return _BASIS_CACHE[key]


def cached_priors(path: str, approximant: str):
    """The prior file at ``path``, parsed once per process."""
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
    write_chunk(task.path, {k: params[k] for k in keys}, cp, cc, uuid.uuid4().hex[:8])
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


def _first_parameters(priors, keys, seed: int, index: int, n: int) -> dict:
    """First parameter set of chunk ``index``, regenerated from its stream (for error messages)."""
    try:
        p = draw(priors, keys, n, stage_rng(seed, STREAM, index))
        return {k: float(v[0]) for k, v in p.items()}
    except Exception as exc:  # reporting must not hide the original error
        return {"unavailable": str(exc)}


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
                    f"Rerun to retry; to debug, run gwnpe.stages.training_set.generate_chunk on this chunk alone."
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
    *,
    prior_path: str | Path,
    basis_path: str | Path,
    out_path: str | Path,
    threads: int,
    progress: bool = True,
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
    prior_path, basis_path, out_path = Path(prior_path), Path(basis_path), Path(out_path)
    ts = settings["training_set"]
    n_total, chunk_size, retries = int(ts["size"]), int(ts["chunk_size"]), int(ts["retries"])
    generator = build_waveform_generator(settings)
    priors = load_priors(prior_path, approximant=generator.approximant)
    keys = intrinsic_keys(priors)
    if not keys:
        raise GwnpeError(f"prior file '{prior_path}' samples no intrinsic parameter; every training waveform would be the same.")
    k, delta_f = basis_shape(basis_path, generator.domain.frequencies)
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
    prov = make_provenance(
        "training_set", {**stage_settings(settings, "training_set"), "intrinsic_parameters": list(keys)},
        inputs={"basis": basis_path}, texts={"prior_file": prior_path.read_text()},
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
        attrs = {
            "n": n_total, "chunk_size": chunk_size, "n_chunks": len(tasks), "basis_size": k, "delta_f": delta_f,
            "reference_distance": generator.reference_distance, "approximant": generator.approximant,
            "intrinsic_parameters": json.dumps(keys),
            "fixed_parameters": json.dumps(fixed_parameters(priors), sort_keys=True),
        }
        write_training_set(out_path, meta, keys, n_total, k, failures, attrs, prov)
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
