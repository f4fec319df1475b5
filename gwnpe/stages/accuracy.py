"""The accuracy stage: the table and histogram of the accuracy campaign (importance sampling of
campaign injections above an SNR threshold to a target ESS, one ``accuracy_sampling`` job per event,
made by :func:`gwnpe.stages.importance_sampling.run_importance_sampling_stage`)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from .. import provenance
from ..diagnostics.plots import efficiency_figure
from ..errors import ComparisonError
from ..products.common import make_provenance, save_figure, write_csv
from ..products.results import read_result
from .settings import stage_settings

logger = logging.getLogger(__name__)

COLUMNS = ("injection", "network_snr", "efficiency", "ess", "pareto_k", "n_samples", "target_ess", "reached",
           "npe_time_s", "is_time_s", "seconds_per_effective_sample", "refined", "efficiency_before",
           "refine_time_s", "truncation_ok")


def run_accuracy_stage(settings: dict, *, indices: list[int], paths: list, out_csv, out_json, out_plot) -> dict:
    """One row per event (``COLUMNS``), a summary (medians, minimum, how many reached the target) and
    the efficiency histogram. Returns the summary."""
    rows = []
    for i, path in zip(indices, paths):
        r = read_result(path, f"importance-sampling result of injection {i}", ComparisonError)
        meta = r.meta_data["gwnpe"]
        s = meta["importance_sampling"]
        npe, is_time = float(meta["npe_time_s"]), float(s["time"])
        ref = s.get("refinement") or {}
        refined = bool(ref.get("refined"))
        rows.append([i, float(meta["snr"]["network_optimal"]), s["efficiency"], s["ess"], s["pareto_k"], s["n"],
                     s["target_ess"], bool(s["reached"]), npe, is_time,
                     # the refinement's simulation and fine-tuning included
                     (npe + is_time + (ref["info"]["seconds"] if refined else 0.0)) / max(s["ess"], 1e-12), refined,
                     # the amortised network's first batch (= the final efficiency when not refined)
                     ref.get("efficiency_before", s["efficiency"]),
                     ref.get("time") if refined else None,
                     ref["truncation"]["ok"] if refined else None])
    eff = np.array([row[2] for row in rows])
    reached = np.array([row[7] for row in rows])
    summary = {
        "events": len(rows),
        "median_efficiency": float(np.median(eff)) if rows else None,
        "min_efficiency": float(np.min(eff)) if rows else None,
        "median_ess": float(np.median([row[3] for row in rows])) if rows else None,
        "median_efficiency_before_refinement": float(np.median([row[12] for row in rows])) if rows else None,
        "refined": int(sum(row[11] for row in rows)),
        "reached_target": int(reached.sum()),
        "target_ess": settings["accuracy"]["target_ess"],
        "max_samples": settings["accuracy"]["max_samples"],
        "min_snr": settings["accuracy"]["min_snr"],
        "goals": {"median_efficiency_at_least_1_percent": bool(rows) and float(np.median(eff)) >= 0.01,
                  "every_event_reaches_the_target_ess": bool(rows) and bool(reached.all())},
        "provenance": make_provenance("accuracy", stage_settings(settings, "accuracy"),
                                      inputs={f"injection_{i}": p for i, p in zip(indices, paths)}),
    }
    write_csv(out_csv, list(COLUMNS), rows)
    with provenance.atomic_output(out_json) as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=1, default=str))
    save_figure(efficiency_figure(eff, reached, settings["accuracy"]["target_ess"]), out_plot, dpi=100)
    if rows:
        logger.info("accuracy campaign: %d events, median efficiency %.3f%% (min %.3f%%), median ESS %.0f, "
                    "%d of %d reached ESS %g", len(rows), 100 * summary["median_efficiency"],
                    100 * summary["min_efficiency"], summary["median_ess"], summary["reached_target"], len(rows),
                    summary["target_ess"])
    return summary
