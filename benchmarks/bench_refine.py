"""Accuracy levers on the default problem at a bounded scale, measured in one run: importance-sampling
efficiency of the amortised network with all 9 parameters (plain), of a network that leaves phase and
coalescence time to the exactly marginalised likelihood (``model.marginalized: [phase, time]``), and of
each after per-event refinement (``refine="always"``); ESS, Pareto k-hat, the IS-weighted coalescence-time
90% width and the wall time per event.

Products and models found in ``--folder`` are reused (the plain model and products are those of
bench_gnpe.py when the folders agree). Prints a table and writes ``refine.csv`` there.

    python benchmarks/bench_refine.py --folder results/bench_gnpe --injections 4
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np


def weighted_width(x: np.ndarray, w: np.ndarray, lo: float = 0.05, hi: float = 0.95) -> float:
    from gwnpe.diagnostics.jsd import _weighted_quantiles

    a, b = _weighted_quantiles(np.asarray(x, float), np.asarray(w, float), np.array([lo, hi]))
    return float(b - a)


def main() -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from _products import add_bench_arguments, bench_events, bench_products
    from bench_gnpe import train

    from gwnpe.inference.refinement import importance_sample_refined
    from gwnpe.products.basis import load_basis
    from gwnpe.products.common import write_csv
    from gwnpe.products.model import load_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_bench_arguments(ap, injections=4)
    ap.add_argument("--models", default="npe,marginalized")
    ap.add_argument("--modes", default="never,always", help="refinement modes to run per model")
    args = ap.parse_args()
    folder, products, cfg = bench_products(args)
    configs = {"npe": copy.deepcopy(cfg), "marginalized": copy.deepcopy(cfg)}
    for c in configs.values():
        c["model"]["gnpe"]["enabled"] = False
    configs["marginalized"]["model"]["marginalized"] = ["phase", "time"]
    names = args.models.split(",")
    models = {name: train(configs[name], products, folder / name, args.threads) for name in names}
    basis = load_basis(products["basis"])

    events = bench_events(cfg, products["psds"], folder, args.injections, args.min_snr)
    w = cfg["waveform"]
    rows = []
    for name, path in models.items():
        model = load_model(path)
        for mode in args.modes.split(","):
            for i, inj in events:
                t0 = time.perf_counter()
                res, _ = importance_sample_refined(
                    model, inj["strain"], inj["psd"], inj["start_time"], w["approximant"], w["reference_frequency"],
                    target_ess=1e12, max_samples=args.n_samples, batch_size=args.n_samples, refine=mode, seed=1000 + i,
                    basis=basis)
                wall = time.perf_counter() - t0
                r = res["refinement"]
                tc = res["samples"]["geocent_time"]
                rows.append({"model": name, "refine": mode, "injection": i, "snr": inj["snr"]["network_optimal"],
                             "efficiency_before": r["efficiency_before"], "efficiency": res["efficiency"],
                             "ess": res["ess"], "pareto_k": res["pareto_k"],
                             "tc_width_is_ms": 1e3 * weighted_width(tc, res["weights"]),
                             "refine_s": r["info"]["seconds"] if r["refined"] else 0.0, "wall_s": wall,
                             "truncation_ok": r["truncation"]["ok"] if r["refined"] else None})
                x = rows[-1]
                print(f"{name:12s} {mode:6s} inj {i:3d} SNR {x['snr']:5.1f}: efficiency {100 * x['efficiency_before']:7.3f}% -> "
                      f"{100 * x['efficiency']:7.3f}% (ESS {x['ess']:7.1f} of {args.n_samples}), k-hat {x['pareto_k']:5.2f}, "
                      f"IS t_c 90% {x['tc_width_is_ms']:7.3f} ms, refinement {x['refine_s']:.0f} s, total {wall:.0f} s",
                      flush=True)
    write_csv(folder / "refine.csv", list(rows[0]), [list(r.values()) for r in rows])
    print(f"\n{'model':13s}{'refine':>7s}{'median eff.':>13s}{'min eff.':>11s}{'median ESS':>12s}{'median s/event':>16s}")
    for name in models:
        for mode in args.modes.split(","):
            sel = [r for r in rows if r["model"] == name and r["refine"] == mode]
            print(f"{name:13s}{mode:>7s}{100 * np.median([r['efficiency'] for r in sel]):12.3f}%"
                  f"{100 * min(r['efficiency'] for r in sel):10.3f}%{np.median([r['ess'] for r in sel]):12.1f}"
                  f"{np.median([r['wall_s'] for r in sel]):16.0f}")
    print(f"({len(events)} injections with network SNR >= {args.min_snr}, {args.n_samples} samples per event, "
          f"training set {args.training_size}, {args.epochs} epochs, {args.threads} threads)")


if __name__ == "__main__":
    main()
