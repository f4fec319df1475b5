"""The events stage: real events (``events.list``: name, GPS time, strain files) analysed with the trained
model, one job per event, and a table of events.

Per event: the segment at the event's GPS time from its strain files (Tukey-windowed as in training),
Welch PSDs from the ``events.psd_duration`` s before it, the network's sky rotated to the event time
(:func:`gwnpe.inference.sampling.at_gps_time`), NPE samples importance-sampled to ``events.target_ess``
with the exact likelihood (and per-event refinement with ``events.refine``), written as a bilby Result;
octaves where the event's ASD differs from the training ASD are recorded in it and in the table.
"""

from __future__ import annotations

import hashlib
import json
import logging

import numpy as np

from .. import provenance
from ..errors import GwnpeError
from ..inference.importance_sampling import importance_result_fields, warn_if_inefficient
from ..inference.sampling import (analysis_psds, asd_outside_training, at_gps_time, model_priors, psds_from_time_domain,
                                  reference_time, strain_from_time_domain)
from ..products.common import make_provenance, save_figure, write_csv
from ..inference.refinement import sample_to_target
from ..products.model import load_model, refined_model_path, save_model
from ..products.results import read_result, save_result
from .cluster import optional_client
from .settings import stage_settings

logger = logging.getLogger(__name__)

#: Seed offset of the events' draws (apart from the comparison's and the accuracy campaign's).
EVENTS_SEED_OFFSET = 700_000_000

COLUMNS = ("event", "gps_time", "chirp_mass_median", "chirp_mass_90", "luminosity_distance_median",
           "luminosity_distance_90", "efficiency", "ess", "pareto_k", "n", "reached", "refined", "npe_s", "is_s",
           "s_per_effective_sample", "log_bayes_factor", "log_bayes_factor_err", "asd_outside_training")


def run_event_stage(settings: dict, *, event: dict, model_path, out_path, threads: int = 1, device: str = "cpu") -> dict:
    """Analyse one event (an ``events.list`` entry, :func:`gwnpe.stages.workflow.event_entry`) with the model;
    write a bilby Result. Returns the IS summary."""
    import torch

    torch.set_num_threads(max(1, int(threads)))
    cfg = settings["events"]
    name, gps = event["name"], float(event["gps_time"])
    model = at_gps_time(load_model(model_path, device=device), gps)
    files = {ifo: str(p) for ifo, p in event["strain_files"].items()}
    channels = dict(event.get("channels") or {})
    strain, start, window_factor = strain_from_time_domain(model, files, channels)
    welch = psds_from_time_domain(model, files, channels, cfg["psd_duration"])
    psds = analysis_psds(model, welch, window_factor)
    outside = asd_outside_training(model, psds)
    section = {**cfg, "refinement": settings.get("accuracy", {}).get("refinement")}
    # one seed per event name (stable across runs and lists), apart from every other stage's draws
    seed = int(settings["seed"]) * 1000 + EVENTS_SEED_OFFSET + int(hashlib.sha256(name.encode()).hexdigest()[:6], 16)

    with optional_client(settings.get("dask"), threads) as client:
        drawn = sample_to_target(model, strain, psds, start, section, settings["waveform"], seed=seed, client=client,
                                 device=device)
    prov = make_provenance("event_sampling", {**stage_settings(settings, "event_sampling"), "event": event},
                           inputs={"model": model_path})
    if drawn["refined"] is not None:
        # the per-event network beside the result (the amortised model file is untouched)
        path = refined_model_path(out_path)
        save_model(path, drawn["refined"], prov, extra=model.extra)
        drawn["res"]["refinement"]["model"] = path.name
    res = drawn["res"]
    warn_if_inefficient(res, f"event {name}")
    logger.info("event %s (GPS %.3f, sky rotated by %.4f rad from the model's GPS %.3f): NPE %d samples in %.2f s; "
                "IS %.1f s: efficiency %.3f%% (ESS %.0f), log BF %.2f +- %.2f", name, gps,
                model.settings.get("ra_offset", 0.0), reference_time(model), len(drawn["log_q"]), drawn["npe_time"],
                res["time"], 100 * res["efficiency"], res["ess"], res["log_bayes_factor"], res["log_evidence_err"])
    extra, evidence, is_summary = importance_result_fields(res)
    if "refinement" in res:
        is_summary["refinement"] = res["refinement"]
    save_result(
        out_path, model, model_priors(model), drawn["samples"], drawn["log_q"], drawn["npe_time"] + res["time"],
        label=name,
        meta_data={"event": name, "gps_time": gps, "reference_time": reference_time(model),
                   "ra_offset": float(model.settings.get("ra_offset", 0.0)), "strain_files": files,
                   "psd": "Welch from the strain files", "asd_outside_training": json.dumps(outside),
                   "npe_time_s": drawn["npe_time"], "acceptance": drawn["acceptance"],
                   "importance_sampling": is_summary, **({"gnpe": drawn["gnpe"]} if drawn["gnpe"] is not None else {}),
                   "provenance": provenance.dumps(prov)},
        extra_columns=extra, evidence=evidence,
    )
    return is_summary


def plot_event(result_path, out_path) -> None:
    """Corner plot of one event: NPE and NPE+IS (:func:`gwnpe.diagnostics.plots.event_figure`)."""
    from ..diagnostics.plots import event_figure

    save_figure(event_figure(read_result(result_path, "event result", GwnpeError)), out_path, dpi=70)


def _weighted_quantiles(x: np.ndarray, w: np.ndarray, q) -> np.ndarray:
    order = np.argsort(x)
    c = np.cumsum(w[order])
    return np.interp(np.asarray(q) * c[-1], c, x[order])


def run_events_table_stage(settings: dict, *, names: list[str], paths: list, out_csv) -> list[list]:
    """One row per event (``COLUMNS``): weighted medians and 90% intervals of chirp mass and distance,
    the importance-sampling figures and the ASD flags."""
    rows = []
    for name, path in zip(names, paths):
        r = read_result(path, f"result of event {name}", GwnpeError)
        meta = r.meta_data["gwnpe"]
        s = meta["importance_sampling"]
        post = r.posterior
        w = np.asarray(post["weights"], float) if "weights" in post else np.ones(len(post))
        cells = []
        for key in ("chirp_mass", "luminosity_distance"):
            lo, med, hi = _weighted_quantiles(np.asarray(post[key], float), w, [0.05, 0.5, 0.95])
            cells += [f"{med:.4g}", f"{lo:.4g}-{hi:.4g}"]
        outside = json.loads(meta.get("asd_outside_training") or "[]")
        flags = "; ".join(f"{o['detector']} {o['f_low']:.0f}-{o['f_high']:.0f} Hz x{o['ratio']:.2f}" for o in outside)
        npe, is_time = float(meta["npe_time_s"]), float(s["time"])
        rows.append([name, f"{float(meta['gps_time']):.3f}", *cells, s["efficiency"], s["ess"], s["pareto_k"], s["n"],
                     bool(s["reached"]), bool((s.get("refinement") or {}).get("refined")), npe, is_time,
                     (npe + is_time) / max(s["ess"], 1e-12), r.log_bayes_factor, r.log_evidence_err, flags or "none"])
    write_csv(out_csv, list(COLUMNS), rows)
    return rows

