"""The compare stage: per-parameter Jensen-Shannon divergences of NPE and NPE+IS against bilby, log
Bayes factors (dynesty vs IS) and wall-time ratios (:mod:`gwnpe.diagnostics.comparison`), as tables,
and the corner overlay of the three posteriors."""

from __future__ import annotations

import logging
from pathlib import Path

from ..diagnostics.comparison import aggregate, compare_injection, reference_quality
from ..diagnostics.plots import overlay_figure
from ..errors import ComparisonError
from ..gw.priors import load_priors, sampled_keys
from ..products.common import make_provenance, save_figure, write_json, write_table
from ..products.results import read_result
from .settings import stage_settings

logger = logging.getLogger(__name__)


def _read_result(path, what: str):
    return read_result(path, what, ComparisonError)


def run_compare_stage(settings: dict, *, indices: list[int], bilby_paths: list, is_paths: list, out_dir) -> dict:
    """Write ``jsd.csv``, ``summary.json``, ``jsd_table.csv``, ``times.csv`` and ``evidence.csv`` to ``out_dir``.

    ``bilby_paths`` holds, per injection, the paths of its reference runs (run 0 first; a single path
    is one run). NPE and NPE+IS are compared with run 0; run 1 gives the noise floor.
    """
    import pandas as pd

    if not (len(indices) == len(bilby_paths) == len(is_paths)):
        raise ComparisonError(f"{len(indices)} injections but {len(bilby_paths)} bilby and {len(is_paths)} NPE+IS results.")
    parameters = sampled_keys(load_priors(settings["priors"]))
    cmp = settings["comparison"]
    per, rows = {}, []
    for i, pbs, pi in zip(indices, bilby_paths, is_paths):
        pbs = [pbs] if isinstance(pbs, (str, Path)) else list(pbs)
        rbs, ri = [_read_result(p, "bilby") for p in pbs], _read_result(pi, "NPE+IS")
        for k in parameters:
            for res, what, p in (*((rb, "bilby", pb) for rb, pb in zip(rbs, pbs)), (ri, "NPE+IS", pi)):
                if k not in res.posterior:
                    raise ComparisonError(f"{what} result '{p}' has no samples of '{k}'; it was made with another prior.")
        c = compare_injection(rbs[0], ri, parameters, cmp["jsd_bootstrap"], int(settings["seed"]) + i, other_runs=rbs[1:])
        rows += [{"injection": i, **r} for r in c.pop("jsd")]
        per[str(i)] = c
    jsd = pd.DataFrame(rows)
    agg = aggregate(per, jsd, indices)
    quality = reference_quality(cmp["sampler"])
    summary = {"aggregate": agg, "per_injection": per, "reference_quality": quality, "reference": "bilby run 0 of each injection; floor = JSD of runs 0 and 1 (other seeds); verdict "
               "'indistinguishable' when the JSD is within floor + 0.002 nat",
               "estimator": "binned Gaussian KDE with one Scott bandwidth for both sets (robust scale), periodic "
               "parameters wrapped, bounded ones reflected at the prior edges, nats; error = bootstrap standard "
               "deviation (gwnpe.diagnostics.jsd)",
               "provenance": make_provenance("compare", stage_settings(settings, "compare"))}
    out_dir = Path(out_dir)
    write_table(out_dir / "jsd.csv", jsd, index=False, float_format="%.6g")
    # per parameter and injection: NPE, NPE+IS, the reference's run-to-run floor, and the NPE+IS verdict
    cols = {}
    for i in indices:
        sub = jsd[jsd.injection == i].set_index(["method", "parameter"])
        cols[f"NPE #{i}"] = sub.loc["npe"].jsd
        cols[f"NPE+IS #{i}"] = sub.loc["npe_is"].jsd
        cols[f"floor #{i}"] = sub.loc["npe_is"].floor
        cols[f"NPE+IS verdict #{i}"] = sub.loc["npe_is"].verdict
    wide = pd.DataFrame(cols).reindex(parameters)
    wide.index.name = "parameter"
    write_table(out_dir / "jsd_table.csv", wide, float_format="%.4f")
    times = pd.DataFrame([{"injection": int(i), "reference": quality, "network SNR": c["snr"]["network_optimal"],
                           "bilby [s]": c["bilby"]["sampling_time_s"], "NPE [s]": c["npe"]["time_s"],
                           "NPE+IS [s]": c["npe_is"]["time_s"], "bilby/NPE": c["time_ratio_npe"],
                           "bilby/(NPE+IS)": c["time_ratio_npe_is"],
                           "bilby [s per effective sample]": c["seconds_per_effective_sample"]["bilby"],
                           "NPE+IS [s per effective sample]": c["seconds_per_effective_sample"]["npe_is"],
                           "bilby likelihood calls": c["bilby"]["likelihood_calls"]}
                          for i, c in per.items()])
    write_table(out_dir / "times.csv", times, index=False, float_format="%.4g")
    ev = pd.DataFrame([{"injection": int(i), "log BF dynesty": c["bilby"]["log_bayes_factor"],
                        "err dynesty": c["bilby"]["log_bayes_factor_err"],
                        "log BF dynesty, other seeds": " ".join(f"{r['log_bayes_factor']:.3f}" for r in c["reference_runs"][1:]), "log BF NPE+IS": c["npe_is"]["log_bayes_factor"],
                        "err NPE+IS": c["npe_is"]["log_bayes_factor_err"], "difference [sigma]": c["log_bayes_factor_difference_sigma"],
                        "verdict": c["evidence_verdict"], "IS efficiency": c["npe_is"]["efficiency"],
                        "IS ESS": c["npe_is"]["ess"], "IS Pareto k-hat": c["npe_is"]["pareto_k"]} for i, c in per.items()])
    write_table(out_dir / "evidence.csv", ev, index=False, float_format="%.4g")
    write_json(out_dir / "summary.json", summary, newline=True, indent=2, default=float)
    logger.info("reference: %s", quality)
    logger.info("comparison of %d injections: max JSD NPE %.4f / NPE+IS %.4f nat; median IS efficiency %.1f%%; "
                "min time ratio %.0f", len(indices), agg["jsd_max_nat"]["npe"], agg["jsd_max_nat"]["npe_is"],
                100 * agg["is_efficiency_median"], agg["time_ratio_npe_min"])
    return summary


def plot_overlay(bilby_path, is_path, out_path) -> None:
    """Corner overlay of bilby (dynesty), NPE and NPE+IS posteriors of one injection (PNG)."""
    fig = overlay_figure(_read_result(bilby_path, "bilby"), _read_result(is_path, "NPE+IS"))
    save_figure(fig, out_path, dpi=70)
