"""Figures of merit of a comparison with a reference sampler (bilby + dynesty): per-parameter
Jensen-Shannon divergences of NPE and NPE+IS, log Bayes factors, wall-time ratios, and the goals."""

from __future__ import annotations

import numpy as np

from ..errors import ComparisonError
from .jsd import js_divergence

#: Goals of the comparison (README "Comparison with Bilby").
GOALS = {"jsd_max_nat": 0.002, "is_efficiency_median_min": 0.10, "log_evidence_max_sigma": 2.0, "speedup_min": 1000.0}


#: Fewest bilby posterior samples a JSD is computed from.
MIN_REFERENCE_SAMPLES = 10


def compare_injection(bilby_result, is_result, parameters: list[str], n_bootstrap: int, seed: int) -> dict:
    """JSDs, evidences and times of one injection (bilby Results of the reference and of NPE+IS)."""
    ref = bilby_result.posterior
    post = is_result.posterior
    if len(ref) < MIN_REFERENCE_SAMPLES:
        raise ComparisonError(
            f"the bilby result of injection {bilby_result.meta_data['gwnpe']['injection']} has {len(ref)} posterior "
            f"samples, too few to compare (at least {MIN_REFERENCE_SAMPLES}); the run stopped early: raise "
            "comparison.sampler.max_calls (or set it to null) or comparison.sampler.nlive."
        )
    w = post["weights"].to_numpy()
    rows = []
    for j, k in enumerate(parameters):
        for method, weights in (("npe", None), ("npe_is", w)):
            v, e = js_divergence(post[k].to_numpy(), ref[k].to_numpy(), weights_x=weights, n_bootstrap=n_bootstrap,
                                 seed=seed + j, name=k)
            rows.append({"parameter": k, "method": method, "jsd": v, "jsd_err": e})
    meta_b = bilby_result.meta_data["gwnpe"]
    meta_i = is_result.meta_data["gwnpe"]
    is_sum = meta_i["importance_sampling"]
    t_bilby = float(meta_b["sampling_time_s"])
    t_npe = float(meta_i["npe_time_s"])
    t_is = t_npe + float(is_sum["time"])
    lbf_b, err_b = float(bilby_result.log_bayes_factor), float(bilby_result.log_evidence_err)
    lbf_i, err_i = float(is_sum["log_bayes_factor"]), float(is_sum["log_evidence_err"])
    sigma = float(np.hypot(err_b, err_i))
    return {
        "jsd": rows,
        "snr": meta_b["snr"],
        "bilby": {"sampling_time_s": t_bilby, "log_bayes_factor": lbf_b, "log_bayes_factor_err": err_b,
                  "n_posterior": len(ref), "likelihood_calls": int(getattr(bilby_result, "num_likelihood_evaluations", 0) or 0),
                  "likelihood": meta_b.get("likelihood")},
        "npe": {"time_s": t_npe, "n_samples": len(post)},
        "npe_is": {"time_s": t_is, "efficiency": float(is_sum["efficiency"]), "ess": float(is_sum["ess"]),
                   "log_bayes_factor": lbf_i, "log_bayes_factor_err": err_i},
        "time_ratio_npe": t_bilby / t_npe,
        "time_ratio_npe_is": t_bilby / t_is,
        "log_bayes_factor_difference": lbf_i - lbf_b,
        "log_bayes_factor_difference_sigma": (lbf_i - lbf_b) / sigma if sigma > 0 else float("inf"),
    }


def aggregate(per: dict, jsd, indices: list[int]) -> dict:
    """Aggregate figures over the compared injections (``per``: :func:`compare_injection` results by
    index; ``jsd``: a DataFrame of their JSD rows) and whether each goal is met."""
    eff = [c["npe_is"]["efficiency"] for c in per.values()]
    agg = {
        "injections": indices,
        "jsd_max_nat": {m: float(jsd[jsd.method == m].jsd.max()) for m in ("npe", "npe_is")},
        "jsd_median_nat": {m: float(jsd[jsd.method == m].jsd.median()) for m in ("npe", "npe_is")},
        "is_efficiency_median": float(np.median(eff)),
        "log_bayes_factor_max_abs_sigma": float(max(abs(c["log_bayes_factor_difference_sigma"]) for c in per.values())),
        "time_ratio_npe_min": float(min(c["time_ratio_npe"] for c in per.values())),
        "time_ratio_npe_median": float(np.median([c["time_ratio_npe"] for c in per.values()])),
        "time_ratio_npe_is_median": float(np.median([c["time_ratio_npe_is"] for c in per.values()])),
    }
    agg["goals"] = {
        "jsd_npe_is_max_below_0.002": agg["jsd_max_nat"]["npe_is"] <= GOALS["jsd_max_nat"],
        "is_efficiency_median_above_10pc": agg["is_efficiency_median"] >= GOALS["is_efficiency_median_min"],
        "log_bayes_factor_within_2_sigma": agg["log_bayes_factor_max_abs_sigma"] <= GOALS["log_evidence_max_sigma"],
        "npe_1000x_faster": agg["time_ratio_npe_min"] >= GOALS["speedup_min"],
    }
    return agg
