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
