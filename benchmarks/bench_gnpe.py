"""GNPE against plain NPE on the default problem at a bounded scale: the same products, the same
training budget, the same injections; importance-sampling efficiency, ESS, Pareto k-hat and the
coalescence-time 90% width (NPE and IS-weighted) per injection, and their medians.

Both models are trained (and resumed from their checkpoints when interrupted) in ``--folder``;
products and models found there are reused. Prints a table and writes ``gnpe.csv`` there.

    python benchmarks/bench_gnpe.py --folder results/bench_gnpe --training-size 50000 --epochs 12 --injections 8
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np


def weighted_width(x: np.ndarray, w: np.ndarray | None, lo: float = 0.05, hi: float = 0.95) -> float:
    """Width of the central 90% interval of x (weighted)."""
    order = np.argsort(x)
    x = x[order]
    w = np.ones_like(x) if w is None else np.asarray(w, float)[order]
    c = np.cumsum(w) / w.sum()
    return float(np.interp(hi, c, x) - np.interp(lo, c, x))


def train(cfg: dict, products: dict, folder: Path, threads: int) -> Path:
    from gwnpe.stages.train import TrainOutputs, run_train_stage

    folder.mkdir(parents=True, exist_ok=True)
    out = TrainOutputs(model=folder / "model.pt", history=folder / "history.csv", plot=folder / "loss.png",
                       checkpoint=folder / "checkpoint.pt", throughput=folder / "throughput.csv")
    if not Path(out.model).exists():
        t0 = time.perf_counter()
        run_train_stage(cfg, training_set_path=products["training_set"], basis_path=products["basis"],
                        psd_paths=products["psds"], out=out, threads=threads)
        print(f"trained {folder.name} in {time.perf_counter() - t0:.0f} s", flush=True)
    return Path(out.model)


def main() -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from _products import add_bench_arguments, bench_events, bench_products

    from gwnpe.inference.importance_sampling import importance_sample
    from gwnpe.inference.sampling import sample_posterior
    from gwnpe.products.common import write_csv
    from gwnpe.products.model import load_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_bench_arguments(ap, injections=8)
    ap.add_argument("--kappa", type=float, default=0.001)
    ap.add_argument("--iterations", type=int, default=30)
    args = ap.parse_args()
    folder, products, cfg = bench_products(args)
    plain = copy.deepcopy(cfg)
    plain["model"]["gnpe"]["enabled"] = False
    gnpe = copy.deepcopy(cfg)
    gnpe["model"]["gnpe"].update(enabled=True, kappa=args.kappa, iterations=args.iterations)
    models = {"npe": train(plain, products, folder / "npe", args.threads),
              "gnpe": train(gnpe, products, folder / "gnpe", args.threads)}

    events = bench_events(cfg, products["psds"], folder, args.injections, args.min_snr)
    w = cfg["waveform"]
    rows = []
    for name, path in models.items():
        model = load_model(path)
        for i, inj in events:
            t0 = time.perf_counter()
            out = sample_posterior(model, inj["strain"], inj["psd"], args.n_samples, start_time=inj["start_time"], seed=i)
            t_npe = time.perf_counter() - t0
            res = importance_sample(model, inj["strain"], inj["psd"], inj["start_time"], out["samples"], out["log_q"],
                                    args.n_samples / out["acceptance"], w["approximant"], w["reference_frequency"])
            tc = out["samples"]["geocent_time"]
            rows.append({"model": name, "injection": i, "snr": inj["snr"]["network_optimal"], "efficiency": res["efficiency"], "ess": res["ess"],
                         "pareto_k": res["pareto_k"], "tc_width_ms": 1e3 * weighted_width(tc, None),
                         "tc_width_is_ms": 1e3 * weighted_width(tc, res["weights"]),
                         "acceptance": out["acceptance"], "npe_s": t_npe, "is_s": res["time"],
                         "gibbs_shift": (out.get("gnpe") or {}).get("max_mean_shift", float("nan"))})
            r = rows[-1]
            print(f"{name:5s} inj {i:3d} SNR {r['snr']:5.1f}: efficiency {100 * r['efficiency']:7.3f}% (ESS {r['ess']:7.1f} of "
                  f"{args.n_samples}), k-hat {r['pareto_k']:5.2f}, t_c 90% {r['tc_width_ms']:6.2f} ms (IS {r['tc_width_is_ms']:6.2f}), "
                  f"NPE {r['npe_s']:.1f} s, IS {r['is_s']:.1f} s", flush=True)
    write_csv(folder / "gnpe.csv", list(rows[0]), [list(r.values()) for r in rows])
    print(f"\n{'model':6s}{'median eff.':>14s}{'min eff.':>11s}{'median ESS':>12s}{'t_c 90% [ms]':>14s}{'IS t_c [ms]':>13s}"
          f"{'NPE s/event':>13s}")
    for name in models:
        sel = [r for r in rows if r["model"] == name]
        med = {k: float(np.median([r[k] for r in sel])) for k in ("efficiency", "ess", "tc_width_ms", "tc_width_is_ms", "npe_s")}
        print(f"{name:6s}{100 * med['efficiency']:13.3f}%{100 * min(r['efficiency'] for r in sel):10.3f}%{med['ess']:12.1f}"
              f"{med['tc_width_ms']:14.2f}{med['tc_width_is_ms']:13.2f}{med['npe_s']:13.1f}")
    g = {r["injection"]: r for r in rows if r["model"] == "gnpe"}
    ratio = [g[r["injection"]]["efficiency"] / max(r["efficiency"], 1e-12) for r in rows if r["model"] == "npe"]
    print(f"efficiency ratio GNPE/NPE per injection: median {np.median(ratio):.1f}x ({len(ratio)} injections, "
          f"{args.n_samples} samples each, training set {args.training_size}, {args.epochs} epochs)")


if __name__ == "__main__":
    main()
