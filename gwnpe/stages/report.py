"""Report artefacts: corner plots of posteriors, the timing table and the provenance table."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from .. import provenance
from ..products.common import read_csv, read_json, save_figure, write_csv
from ..products.results import read_result
from ..diagnostics.plots import corner_figure
from ..errors import InjectionError

logger = logging.getLogger(__name__)


def plot_corner(posterior_path, out_path, parameters: list[str] | None = None) -> None:
    """Corner plot of a posterior file (bilby Result) with the injected values marked (PNG)."""
    result = read_result(posterior_path, "posterior", InjectionError)
    save_figure(corner_figure(result, parameters), out_path, dpi=80)


def write_timings(benchmark_files: list, pp_json, throughput_csv, out_csv) -> None:
    """Wall time of each stage (Snakemake benchmark files), training time and inference time per event."""
    rows = []
    for f in benchmark_files:
        rec = read_csv(f)[0]
        stage = Path(f).with_suffix("").as_posix().split("/benchmarks/")[-1]
        rows.append((f"stage {stage} (wall time)", float(rec["s"])))
    hist = read_csv(throughput_csv)
    if hist:
        rows.append(("training: total over epochs", sum(float(h["wall_time"]) for h in hist)))
        rows.append(("training: median samples/s", float(np.median([float(h["samples_per_second"]) for h in hist]))))
    pp = read_json(pp_json)
    rows.append(("NPE inference per event (batched sampling)", pp["sampling_time_per_event"]))
    write_csv(out_csv, ["quantity", "seconds (or samples/s)"], [[name, f"{v:.4g}"] for name, v in rows])


def _flatten(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flatten(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def write_provenance_table(config: dict, out_csv) -> None:
    """gwnpe's git commit, package versions and the config, one row each."""
    rows = [[f"version: {k}", v] for k, v in provenance.package_versions().items()]
    rows += [[f"config: {k}", json.dumps(v)] for k, v in _flatten(config)]
    write_csv(out_csv, ["item", "value"], rows)
