"""Where a GNPE model's sampling time goes, per event: the network passes (Gibbs iterations over the
chains, then density recovery's draws), the fit of density recovery's flow to the chains' proxies, the
time shifts of the strain and the initialisation network, for injections of a run.

    python benchmarks/bench_gnpe_sampling.py --run results/default --injections 1 2 4 -n 5000

Prints a table (seconds per part and its share of the total) and the medians over the injections.
The parts are timed by wrapping the functions :class:`gwnpe.inference.gnpe.GNPESampler` calls.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=Path("results/default"), help="run folder (model/, injections/)")
    ap.add_argument("--injections", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("-n", type=int, default=5000, help="samples per event")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    import torch

    from gwnpe.inference import gnpe as G
    from gwnpe.inference.sampling import model_domain, model_priors, whitened_strain
    from gwnpe.products.injections import load_injections
    from gwnpe.products.model import load_model

    torch.set_num_threads(args.threads)
    model = load_model(args.run / "model" / "model.pt").eval()
    if model.gnpe is None:
        raise SystemExit(f"{args.run}/model/model.pt is not a GNPE model (model.gnpe.enabled was false).")
    inj = load_injections(args.run / "injections" / "injections.h5")
    dom = model_domain(model)
    priors = model_priors(model)
    times: dict[str, float] = {}

    def timed(name, f):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return f(*a, **k)
            finally:
                times[name] = times.get(name, 0.0) + time.perf_counter() - t0
        return wrapper

    G.fit_density = timed("density fit", G.fit_density)
    G.shift_phasor = timed("time shifts", G.shift_phasor)
    model.sample_and_log_prob = timed("network passes", model.sample_and_log_prob)
    model.init.sample_and_log_prob = timed("initialisation", model.init.sample_and_log_prob)
    parts = ["network passes", "density fit", "time shifts", "initialisation"]
    rows = []
    print(f"{'injection':>9} {'total [s]':>9} " + " ".join(f"{p:>15}" for p in parts) + f" {'kept':>6}")
    for i in args.injections:
        d = whitened_strain(model, {k: v[i] for k, v in inj.strain.items()}, inj.psd_of(i), inj.start_time)
        sampler = G.GNPESampler(model, d, dom.frequencies)
        times.clear()
        t0 = time.perf_counter()
        out = sampler.sample(args.n, priors, seed=args.seed)
        total = time.perf_counter() - t0
        rows.append([total] + [times.get(p, 0.0) for p in parts])
        print(f"{i:>9} {total:>9.2f} " + " ".join(f"{times.get(p, 0.0):>8.2f} ({times.get(p, 0.0) / total:>4.0%})"
                                                for p in parts) + f" {out['acceptance']:>6.2f}")
    med = np.median(np.array(rows), axis=0)
    print(f"{'median':>9} {med[0]:>9.2f} " + " ".join(f"{m:>8.2f} ({m / med[0]:>4.0%})" for m in med[1:]))


if __name__ == "__main__":
    main()
