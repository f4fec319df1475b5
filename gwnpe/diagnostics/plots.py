"""Report artefacts: corner plots, timing and provenance tables."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np

from .. import provenance

logger = logging.getLogger(__name__)


def plot_corner(posterior_path, out_path, parameters: list[str] | None = None) -> None:
    """Corner plot of a bilby Result with the injected values marked (bilby's plot_corner)."""
    import bilby
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = bilby.core.result.read_in_result(str(posterior_path))
    keys = parameters or list(r.search_parameter_keys)
    truth = {k: r.injection_parameters[k] for k in keys} if r.injection_parameters else None
    fig = r.plot_corner(parameters=truth or keys, save=False, priors=False, quantiles=(0.05, 0.95))
    try:
        with provenance.atomic_output(out_path) as tmp:
            fig.savefig(tmp, format="png", dpi=80)
    finally:
        plt.close(fig)


def write_timings(benchmark_files: list, pp_json, throughput_csv, out_csv) -> None:
    """Wall time of each stage (Snakemake benchmark files), training time and inference time per event."""
    rows = []
    for f in benchmark_files:
        with open(f) as fh:
            rec = next(csv.DictReader(fh, delimiter="\t"))
        stage = Path(f).with_suffix("").as_posix().split("/benchmarks/")[-1]
        rows.append((f"stage {stage} (wall time)", float(rec["s"])))
    with open(throughput_csv) as fh:
        hist = list(csv.DictReader(fh))
    if hist:
        rows.append(("training: total over epochs", sum(float(h["wall_time"]) for h in hist)))
        rows.append(("training: median samples/s", float(np.median([float(h["samples_per_second"]) for h in hist]))))
    pp = json.loads(Path(pp_json).read_text())
    rows.append(("NPE inference per event (batched sampling)", pp["sampling_time_per_event"]))
    with provenance.atomic_output(out_csv) as tmp:
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["quantity", "seconds (or samples/s)"])
            for name, v in rows:
                w.writerow([name, f"{v:.4g}"])


def _flatten(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flatten(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def write_provenance_table(config: dict, out_csv) -> None:
    """gwnpe's git commit, package versions and the full config, one row each."""
    with provenance.atomic_output(out_csv) as tmp:
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["item", "value"])
            for k, v in provenance.package_versions().items():
                w.writerow([f"version: {k}", v])
            for k, v in _flatten(config):
                w.writerow([f"config: {k}", json.dumps(v)])
