"""Benchmark of waveform generation and of the training-set stage on dask.

Measures, in one run, on the configured approximant, domain and prior:

* serial cost [ms per waveform] of a bare loop of ``WaveformGenerator.polarizations``
  (and, for reference, of the same LAL call with LAL's SWIG stdio redirection off),
  and the summed rate of w such loops in w plain processes (the machine's own scaling);
* training-set throughput [waveforms/s] of :func:`gwnpe.stages.training_set.run_training_set_stage`
  on local clusters of 1, 2, ... workers (workers warmed up first, so imports and
  cluster start-up are not counted; the end-to-end wall time is printed too), and the
  parallel efficiency ``throughput / (workers x serial rate)`` (serial rate: the bare LAL loop, so
  the stage's extra work per waveform, compression and writing, counts against it) and the
  stage's own scaling ``throughput(w) / (w x throughput(1))``;
* the stage's peak memory (sum of the RSS of this process and all its children,
  sampled every 20 ms) for N and 10 N waveforms, and their ratio.

Goals: efficiency >= 0.9 at 2 workers; 10x more waveforms raise peak memory by at most 20 %.

Usage::

    .venv/bin/python benchmarks/bench_waveforms.py --config config/config.yaml --n 1000 --chunk-size 100 --workers 1,2
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


class PeakRSS:
    """Peak of the summed RSS [bytes] of this process and its children, sampled in a thread."""

    def __init__(self, interval: float = 0.02):
        import psutil

        self._proc = psutil.Process(os.getpid())
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> int:
        import psutil

        total = 0
        for p in [self._proc, *self._proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return total

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.sample())
            self._stop.wait(self.interval)

    def __enter__(self):
        self.peak = self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.sample())


def build_basis(config: dict, path: Path, n_bank: int, size: int) -> None:
    """A reduced basis from a small bank (numpy SVD of whitened h+ and hx), in ``load_basis`` format."""
    import h5py

    from gwnpe.gw.priors import intrinsic_keys, load_priors
    from gwnpe.gw.noise import whiten
    from gwnpe.gw.waveforms import build_waveform_generator, generate_from_prior

    gen = build_waveform_generator(config)
    priors = load_priors(config["priors"], approximant=gen.approximant)
    _, hp, hc, _ = generate_from_prior(gen, priors, intrinsic_keys(priors), n_bank, np.random.default_rng(1), n_bank)
    f = gen.domain.frequencies
    asd = 4e-24 * np.sqrt(1.0 + (40.0 / f) ** 8 + (f / 150.0) ** 2)  # smooth detector-like ASD [1/sqrt(Hz)]
    rows = whiten(np.concatenate([hp, hc]), asd, gen.domain.delta_f)
    V = np.linalg.svd(rows, full_matrices=False)[2].conj().T[:, : min(size, rows.shape[0])]
    with h5py.File(path, "w") as out:
        out.create_dataset("V", data=V)
        out.create_dataset("asd_reference", data=asd)
        out.create_dataset("frequencies", data=f)
        out.attrs["delta_f"] = gen.domain.delta_f


def _lal_rows(config: dict, n: int):
    from gwnpe.gw.priors import draw, fixed_parameters, intrinsic_keys, load_priors
    from gwnpe.gw.waveforms import LAL_ARGS, build_waveform_generator

    gen = build_waveform_generator(config)
    priors = load_priors(config["priors"], approximant=gen.approximant)
    keys = intrinsic_keys(priors)
    params = draw(priors, keys, n, np.random.default_rng(3))
    lal = gen.to_lal({**{k: np.full(n, v) for k, v in fixed_parameters(priors).items()}, **params})
    return gen, [{k: lal[k][i] for k in LAL_ARGS} for i in range(n)]


def loop_rate(config: dict, seconds: float, barrier=None) -> float:
    """Waveforms per second [1/s] of a bare loop of ``WaveformGenerator.polarizations`` over prior draws.

    The loop runs for ``seconds`` of wall time, after waiting at ``barrier`` when given
    (so that loops in several processes overlap).
    """
    from gwnpe.errors import WaveformFailure

    gen, rows = _lal_rows(config, 200)
    gen.polarizations(rows[0])  # warm-up
    if barrier is not None:
        barrier.wait()
    n, t0 = 0, time.perf_counter()
    while True:
        for row in rows:
            try:
                gen.polarizations(row)
            except WaveformFailure:
                pass
            n += 1
            if n % 10 == 0 and time.perf_counter() - t0 >= seconds:
                return n / (time.perf_counter() - t0)


def lal_only_ms(config: dict, n: int = 300) -> float:
    """Wall time [ms] per waveform of the same LAL call with LAL's SWIG stdout/stderr redirection off.

    ``WaveformGenerator.polarizations`` turns the redirection on to capture LAL's error
    messages; it costs temporary files per call, so this shows the generator's own cost.
    """
    import lal
    from bilby.gw.source import lal_binary_black_hole

    from gwnpe.gw.waveforms import LAL_ARGS

    gen, rows = _lal_rows(config, n)
    d = gen.domain

    def call(row):
        return lal_binary_black_hole(
            d.full_frequencies, luminosity_distance=gen.reference_distance, **{k: float(row[k]) for k in LAL_ARGS},
            waveform_approximant=gen.approximant, reference_frequency=gen.reference_frequency,
            minimum_frequency=d.f_min, maximum_frequency=d.f_max, catch_waveform_errors=True,
        )

    previous = lal.swig_redirect_standard_output_error(False)
    try:
        call(rows[0])
        t0 = time.perf_counter()
        for row in rows:
            call(row)
        return (time.perf_counter() - t0) / n * 1e3
    finally:
        lal.swig_redirect_standard_output_error(previous)


def _loop_rate_job(args):
    os.chdir(REPO)
    return loop_rate(*args)


def bare_parallel_rate(config: dict, workers: int, seconds: float) -> float:
    """Summed rate [waveforms/s] of ``workers`` bare loops in separate processes, run simultaneously (no dask)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager, ctx.Pool(workers) as pool:
        barrier = manager.Barrier(workers)  # every process has imported bilby/LAL before the loops start
        return float(sum(pool.map(_loop_rate_job, [(config, seconds, barrier)] * workers)))


def _warm_worker(task) -> float:
    """Run a 2-waveform chunk: imports bilby/LAL/h5py and caches the prior and basis, so timings exclude start-up."""
    from gwnpe.stages.training_set import generate_chunk

    t0 = time.perf_counter()
    generate_chunk(task)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--n", type=int, default=1000, help="waveforms N of the throughput runs and of the first memory run")
    parser.add_argument("--chunk-size", type=int, default=100, help="training_set.chunk_size of every run")
    parser.add_argument("--workers", default="1,2", help="comma-separated local worker counts")
    parser.add_argument("--loop-seconds", type=float, default=3.0, help="duration [s] of each bare-loop measurement")
    parser.add_argument("--bank", type=int, default=150, help="waveforms of the bank the basis is built from")
    parser.add_argument("--memory-factor", type=int, default=10, help="the second memory run has this many times N")
    args = parser.parse_args(argv)

    import distributed  # noqa: F401  (configures its loggers on import; quieten them afterwards)

    from gwnpe.stages.cluster import dask_client
    from gwnpe.stages.workflow import load_config
    from gwnpe.stages.training_set import run_training_set_stage

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ["distributed", "bilby", *(n for n in logging.root.manager.loggerDict if n.startswith("distributed."))]:
        logging.getLogger(name).setLevel(logging.ERROR)

    os.chdir(REPO)
    config = load_config(args.config)
    workers = [int(w) for w in args.workers.split(",")]
    settings = {k: copy.deepcopy(config[k]) for k in ("seed", "priors", "domain", "waveform", "training_set", "dask")}
    settings["training_set"].update(size=args.n, chunk_size=args.chunk_size)
    settings["dask"].update(cluster="local")
    t_start = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="gwnpe-bench-") as tmp:
        tmp = Path(tmp)
        basis = tmp / "basis.h5"
        build_basis(config, basis, args.bank, config["svd"]["size"])
        with h5py_file(basis) as f:
            k, n_bins = f["V"].shape[1], f["V"].shape[0]

        lal_ms = lal_only_ms(config)
        rows = []
        for w in workers:
            # serial rate measured right before and after each dask run (mean used): the machine may be shared and noisy
            serial = loop_rate(config, args.loop_seconds)
            bare = bare_parallel_rate(config, w, args.loop_seconds) if w > 1 else serial
            s = copy.deepcopy(settings)
            s["dask"]["n_workers"] = w
            t0 = time.perf_counter()
            with dask_client(s["dask"], threads=w) as client:
                client.run(_warm_worker, warm_task(s, basis, tmp / "warm"))
                t_ready = time.perf_counter() - t0
                summary = run_training_set_stage(s, prior_path=s["priors"], basis_path=basis, out_path=tmp / f"ts-{w}.h5", threads=w, progress=False, client=client)
            serial_after = loop_rate(config, args.loop_seconds)
            rows.append({
                "w": w, "serial": 0.5 * (serial + serial_after), "serial_before": serial, "serial_after": serial_after,
                "bare": bare, "dask": summary["throughput"], "ready": t_ready,
                "stage": summary["generation_seconds"] + summary["merge_seconds"],
            })

        mem_workers = max(workers)
        peaks = []
        for n in (args.n, args.memory_factor * args.n):
            s = copy.deepcopy(settings)
            s["training_set"]["size"] = n
            s["dask"]["n_workers"] = mem_workers
            with PeakRSS() as rss:
                baseline = rss.peak
                t0 = time.perf_counter()
                summary = run_training_set_stage(s, prior_path=s["priors"], basis_path=basis, out_path=tmp / f"mem-{n}.h5", threads=mem_workers, progress=False)
                wall = time.perf_counter() - t0
            peaks.append({"n": n, "baseline": baseline, "peak": rss.peak, "wall": wall, "dask": summary["throughput"]})

    mib = 2.0**20
    dom = config["domain"]
    print()
    print(
        f"config {args.config}: {config['waveform']['approximant']}, {dom['f_min']:g}-{dom['f_max']:g} Hz, T = {dom['duration']:g} s "
        f"({n_bins} bins), basis K = {k}, chunk_size = {args.chunk_size}, {os.cpu_count()} CPUs; total {time.perf_counter() - t_start:.0f} s"
    )
    print()
    line = "{:<54} {:>14}"
    print(line.format("measurement", "value"))
    print(line.format("LAL call alone, SWIG stdio redirection off [ms/wf]", f"{lal_ms:.2f}"))
    for r in rows:
        w = r["w"]
        print(line.format(f"serial bare loop [ms/wf], around the {w}-worker run", f"{1e3 / r['serial_before']:.2f}, {1e3 / r['serial_after']:.2f}"))
        if w > 1:
            print(line.format(f"  {w} bare loops in parallel, no dask [waveforms/s]", f"{r['bare']:.1f}"))
            print(line.format(f"  machine's parallel efficiency (bare / ({w} x serial))", f"{r['bare'] / (w * r['serial']):.2f}"))
        print(line.format(f"dask training set, {w} worker(s), N = {args.n} [waveforms/s]", f"{r['dask']:.1f}"))
        print(line.format(f"  parallel efficiency (dask / ({w} x serial))", f"{r['dask'] / (w * r['serial']):.2f}"))
        if w > 1:
            print(line.format("  dask / bare parallel loops", f"{r['dask'] / r['bare']:.2f}"))
            one = next((q for q in rows if q["w"] == 1), None)
            if one is not None:
                # the stage's own scaling: same work (generate + compress + write) per waveform
                print(line.format(f"  dask scaling (dask {w} / ({w} x dask 1))", f"{r['dask'] / (w * one['dask']):.2f}"))
        print(line.format("  cluster start + worker warm-up [s]", f"{r['ready']:.1f}"))
        print(line.format("  stage: generate + merge [s]", f"{r['stage']:.1f}"))
    for p in peaks:
        print(line.format(f"peak RSS, N = {p['n']}, {mem_workers} workers [MiB]", f"{p['peak'] / mib:.0f}"))
        print(line.format("  RSS before the stage [MiB]", f"{p['baseline'] / mib:.0f}"))
        print(line.format("  stage wall time incl. cluster start [s]", f"{p['wall']:.1f}"))
        print(line.format("  throughput, workers not warmed up [waveforms/s]", f"{p['dask']:.1f}"))
    p1, p2 = peaks
    ratio = p2["peak"] / p1["peak"]
    print(line.format(f"peak memory ratio N = {p2['n']} / N = {p1['n']}", f"{ratio:.3f}"))
    print(line.format("  ratio of the increases above the RSS before", f"{(p2['peak'] - p2['baseline']) / max(p1['peak'] - p1['baseline'], 1):.3f}"))
    print()
    print("goals:")
    for r in rows:
        if r["w"] == 2:
            eff = r["dask"] / (2 * r["serial"])
            print(f"  parallel efficiency at 2 workers >= 0.90 (vs bare LAL loop): {eff:.2f} -> {'met' if eff >= 0.9 else 'NOT met'}")
            one = next((q for q in rows if q["w"] == 1), None)
            if one is not None:
                sc = r["dask"] / (2 * one["dask"])
                print(f"  dask scaling 2 vs 1 worker (same work per waveform) >= 0.90: {sc:.2f} -> {'met' if sc >= 0.9 else 'NOT met'}")
    print(f"  peak memory at {args.memory_factor} x N <= 1.20 x peak at N: {ratio:.3f} -> {'met' if ratio <= 1.2 else 'NOT met'}")
    return 0


def warm_task(settings: dict, basis: Path, folder: Path):
    from gwnpe.stages.training_set import ChunkTask

    folder.mkdir(exist_ok=True)
    return ChunkTask(
        index=0, start=0, n=2, seed=int(settings["seed"]),
        generator_settings={"domain": settings["domain"], "waveform": settings["waveform"]},
        prior_path=str(Path(settings["priors"]).resolve()), basis_path=str(basis.resolve()), chunk_dir=str(folder), max_failures=2,
    )


def h5py_file(path):
    import h5py

    return h5py.File(path, "r")


if __name__ == "__main__":
    raise SystemExit(main())
