"""Build the data products a benchmark needs (PSDs, bank, basis, training set) for a config, in a folder."""

from __future__ import annotations

import copy
from pathlib import Path


def build_products(config: dict, folder: Path, bank_size: int, training_size: int, threads: int = 2) -> dict:
    """Run the psd, bank, svd and training_set stages of ``config`` (sizes overridden) into ``folder``."""
    from gwnpe.stages.bank import run_bank_stage
    from gwnpe.stages.settings import stage_settings
    from gwnpe.stages.psd import run_psd_stage
    from gwnpe.stages.svd import run_svd_stage
    from gwnpe.stages.training_set import run_training_set_stage

    cfg = copy.deepcopy(config)
    cfg["bank"]["size"] = max(bank_size, cfg["svd"]["size"] + cfg["svd"]["validation_size"])
    cfg["training_set"]["size"] = training_size
    cfg["training_set"]["chunk_size"] = min(cfg["training_set"]["chunk_size"], training_size)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    psds = {}
    for ifo in cfg["detectors"]:
        psds[ifo] = folder / f"{ifo}_psd.txt"
        if not psds[ifo].exists():
            run_psd_stage(ifo, cfg, out_psd=psds[ifo], out_plot=folder / f"{ifo}_psd.png")
    if not (folder / "bank.h5").exists():
        run_bank_stage(stage_settings(cfg, "bank"), out_path=folder / "bank.h5", progress=False)
    if not (folder / "basis.h5").exists():
        run_svd_stage(stage_settings(cfg, "svd"), bank_path=folder / "bank.h5", psd_paths=psds, out_path=folder / "basis.h5", plot_path=None, threads=threads)
    if not (folder / "training_set.h5").exists():
        run_training_set_stage(cfg, prior_path=cfg["priors"], basis_path=folder / "basis.h5",
                               out_path=folder / "training_set.h5", threads=threads, progress=False)
    return {"config": cfg, "psds": psds, "basis": folder / "basis.h5", "training_set": folder / "training_set.h5"}


def add_bench_arguments(ap, injections: int) -> None:
    """The arguments the accuracy benchmarks share: config, folder, scale, events, threads."""
    ap.add_argument("--config", default="config/config.yaml")
    ap.add_argument("--folder", default="results/bench_gnpe")
    ap.add_argument("--training-size", type=int, default=50000)
    ap.add_argument("--bank-size", type=int, default=8000)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--injections", type=int, default=injections, help="injections with network SNR >= --min-snr")
    ap.add_argument("--min-snr", type=float, default=8.0)
    ap.add_argument("--n-samples", type=int, default=5000)
    ap.add_argument("--threads", type=int, default=2)


def bench_products(args) -> tuple[Path, dict, dict]:
    """The benchmark's folder, products (built or reused there at the arguments' scale) and the config
    they were made with (``--config`` with ``--epochs``)."""
    import torch

    from gwnpe.stages.workflow import load_config

    torch.set_num_threads(args.threads)
    folder = Path(args.folder)
    cfg = load_config(args.config)
    cfg["training"]["epochs"] = args.epochs
    products = build_products(cfg, folder / "products", args.bank_size, args.training_size, threads=args.threads)
    return folder, products, products["config"]


def bench_events(cfg: dict, psds: dict, folder: Path, n: int, min_snr: float) -> list[tuple[int, dict]]:
    """The first ``n`` injections with network SNR >= ``min_snr`` of ``folder/injections.h5`` (made with
    8 n injections of ``cfg`` when missing), as (index, event)."""
    from gwnpe.errors import InjectionError
    from gwnpe.products.injections import load_event
    from gwnpe.stages.injections import run_injections_stage
    from gwnpe.stages.settings import stage_settings

    path = Path(folder) / "injections.h5"
    if not path.exists():
        icfg = copy.deepcopy(cfg)
        icfg["injections"]["count"] = 8 * n
        run_injections_stage(stage_settings(icfg, "injections"), psd_paths=psds, out_path=path)
    events, i = [], 0
    while len(events) < n:
        try:
            inj = load_event(path, i, InjectionError)
        except InjectionError:
            break
        if inj["snr"]["network_optimal"] >= min_snr:
            events.append((i, inj))
        i += 1
    return events
