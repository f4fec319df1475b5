"""One model, three GPS times: sky-position coverage of injections made at times spread over a day.

A model is trained at its ``trigger_time`` (the reference); ``gwnpe.inference.sampling.at_gps_time``
serves an event at any other time by rotating right ascension through the sidereal-time difference.
This makes ``--count`` injections (signal + noise, exactly as the injections stage does, at the event
time: detector responses and delays at that time) at each of the reference and ``--hours`` later,
samples them with the model's view at that time, and prints per time and parameter the coverage of
the central 90% interval (binomial 95% band) and the PP KS p-value, plus Fisher's combined p-value.
A model whose sky is right at every time covers the truth at the nominal rate at all three.

    python benchmarks/bench_gps_times.py --config config/config.yaml --model results/default/model/model.pt \\
        --psd-dir results/default/psd --count 100
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats


def main() -> None:
    from gwnpe.config import read_config
    from gwnpe.diagnostics.pp import credible_levels, pp_test
    from gwnpe.inference.sampling import at_gps_time, sample_whitened, to_physical, whitened_strain, whitening_asds
    from gwnpe.products.injections import load_injections
    from gwnpe.products.model import load_model
    from gwnpe.stages.injections import run_injections_stage
    from gwnpe.stages.settings import stage_settings
    from gwnpe.stages.workflow import check_config

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", nargs="+", required=True, help="the run's config file(s), later ones laid over earlier")
    ap.add_argument("--model", required=True)
    ap.add_argument("--psd-dir", required=True, help="the run's psd folder ({ifo}_psd.txt)")
    ap.add_argument("--count", type=int, default=100, help="injections per time")
    ap.add_argument("--hours", type=float, nargs="+", default=[0.0, 8.0, 16.0], help="event times after the reference [h]")
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    cfg = read_config(args.config[0])
    for extra in args.config[1:]:
        _merge(cfg, read_config(extra))
    cfg = check_config(cfg)
    model = load_model(args.model)
    psds = {ifo: Path(args.psd_dir) / f"{ifo}_psd.txt" for ifo in cfg["detectors"]}
    ref = float(model.settings["trigger_time"])
    names = [k for k in model.parameter_names]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, h in enumerate(args.hours):
            t0 = time.perf_counter()
            c = copy.deepcopy(cfg)
            c["trigger_time"] = ref + 3600.0 * h
            c["seed"] = int(cfg["seed"]) + 1000 + k  # other sources at every time
            c["injections"].update(count=args.count, file=None)
            path = Path(tmp) / f"inj_{k}.h5"
            run_injections_stage(stage_settings(c, "injections"), psd_paths=psds, out_path=path,
                                 asd_dataset_path=None)
            inj = load_injections(path)
            view = at_gps_time(model, c["trigger_time"])
            d = np.stack([whitened_strain(view, {i: v[j] for i, v in inj.strain.items()}, inj.psd_of(j), inj.start_time)
                          for j in range(len(inj))])
            asd = np.stack([whitening_asds(view, inj.psd_of(j)) for j in range(len(inj))])
            theta, _ = sample_whitened(view, d, args.samples, seed=int(cfg["seed"]), asd=asd)
            levels, cover = {}, {}
            for p in names:
                lv, inside = [], []
                for j in range(len(inj)):
                    s = to_physical(view, theta[j])[p]
                    truth = float(inj.parameters[p][j]) + (c["trigger_time"] if p == "geocent_time" else 0.0)
                    lv.append(credible_levels(s, truth))
                    lo, hi = np.percentile(s, [5, 95])
                    inside.append(lo <= truth <= hi)
                levels[p], cover[p] = np.array(lv), float(np.mean(inside))
            rows.append((h, c["trigger_time"], pp_test(levels), cover, time.perf_counter() - t0))

    n = args.count
    lo, hi = stats.binom.ppf([0.025, 0.975], n, 0.9) / n
    print(f"\nmodel {args.model} (reference GPS {ref}); {n} injections per time, {args.samples} samples each; "
          f"90% coverage expected in [{lo:.2f}, {hi:.2f}] (binomial 95%)")
    print(f"{'hours':>6} {'GPS':>14} " + " ".join(f"{p[:12]:>12}" for p in names) + f" {'combined p':>11} {'time [s]':>9}")
    for h, t, pp, cover, wall in rows:
        print(f"{h:>6.1f} {t:>14.1f} " + " ".join(f"{cover[p]:>5.2f} p{pp['pvalues'][p]:<5.2f}" for p in names)
              + f" {pp['combined_pvalue']:>11.3f} {wall:>9.1f}")
    sky = [p for p in ("ra", "dec") if p in names]
    # the verdict looks at len(sky) x len(times) coverages at once: a 95% band for all of them together
    # (Bonferroni), beside which the per-cell band above says which single values are unusual
    alpha = 0.05 / max(1, len(sky) * len(rows))
    jlo, jhi = stats.binom.ppf([alpha / 2, 1 - alpha / 2], n, 0.9) / n
    ok = all(jlo <= r[3][p] <= jhi for r in rows for p in sky) and all(r[2]["pvalues"][p] >= 0.01 for r in rows for p in sky)
    outside = [(r[0], p, r[3][p]) for r in rows for p in sky if not lo <= r[3][p] <= hi]
    print(f"\nsky coverages outside the per-cell 95% band: {outside or 'none'}")
    print(f"sky ({', '.join(sky)}) covered at the nominal rate at every time (all {len(sky) * len(rows)} coverages in "
          f"the joint 95% band [{jlo:.2f}, {jhi:.2f}], every KS p >= 0.01): {'yes' if ok else 'NO'}")


def _merge(dst: dict, src: dict) -> None:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        else:
            dst[k] = v


if __name__ == "__main__":
    main()
