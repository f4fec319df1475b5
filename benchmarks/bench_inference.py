"""Inference speed: time per event to draw 10^4 and 5x10^4 posterior samples, one event and batched.

Uses a trained model (``--model``, e.g. results/default/model/model.pt) on injections of its run
(``--injections``), or, without them, the model architecture of ``--config`` with untrained weights
on simulated noise (the cost of sampling does not depend on training). Reports the flow alone and
the full path (whitening, in-prior rejection, derived parameters). Goal: 10^4 samples for one event
in at most 1 s on 2 CPU cores.

    python benchmarks/bench_inference.py --model results/default/model/model.pt --injections results/default/injections/injections.h5
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def main() -> None:
    from gwnpe.inference.sampling import model_domain, sample_whitened, to_physical, whitened_strain
    from gwnpe.products.injections import load_injections
    from gwnpe.products.model import load_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--injections", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--events", type=int, default=16, help="events in the batched measurement")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    inj = load_injections(args.injections)
    rows = []
    for dev in devices:
        model = load_model(args.model, device=dev)
        n_events = min(args.events, len(inj))
        d = np.stack([whitened_strain(model, {k: v[i] for k, v in inj.strain.items()}, inj.psd_of(i), inj.start_time)
                      for i in range(n_events)])
        for n in (10_000, 50_000):
            dt = torch.as_tensor(d[:1], dtype=torch.complex64, device=dev)
            model.sample_and_log_prob(dt, 100)  # warm-up of the flow
            t0 = time.perf_counter()
            sample_whitened(model, d[:1], 100, seed=0, device=dev)  # first call: parses the prior once
            setup = time.perf_counter() - t0
            t0 = time.perf_counter()
            model.sample_and_log_prob(dt, n)
            if dev == "cuda":
                torch.cuda.synchronize()
            flow = time.perf_counter() - t0
            t0 = time.perf_counter()
            th, _ = sample_whitened(model, d[:1], n, seed=0, device=dev)
            to_physical(model, th[0])
            full = time.perf_counter() - t0
            t0 = time.perf_counter()
            sample_whitened(model, d, n, seed=0, batch_events=n_events, device=dev)
            batched = (time.perf_counter() - t0) / n_events
            rows.append((dev, n, flow, full, batched, setup))
    dom = model_domain(model)
    print(f"\nmodel {args.model}: {len(model.parameter_names)} parameters, {len(dom)} bins x {len(model.settings['detectors'])} "
          f"detectors; {args.threads} CPU threads; batched over {n_events} events")
    print(f"{'device':>6} {'samples':>8} {'flow only [s]':>14} {'one event, full [s]':>20} {'batched, per event [s]':>23}")
    for dev, n, flow, full, batched, _ in rows:
        print(f"{dev:>6} {n:>8} {flow:>14.3f} {full:>20.3f} {batched:>23.3f}")
    print(f"one-time setup of the first call in a process (prior parsing): {rows[0][5]:.2f} s")
    cpu10k = next(r for r in rows if r[0] == "cpu" and r[1] == 10_000)
    print(f"\ngoal: 10^4 samples for one event <= 1 s on the CPU: {cpu10k[3]:.2f} s -> {'met' if cpu10k[3] <= 1 else 'NOT met'}")


if __name__ == "__main__":
    main()
