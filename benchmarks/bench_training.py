"""Training throughput: on-the-fly data alone, network step alone, both; and posterior sampling time.

Prints a table of samples/s at batch 512 and 4096 on the CPU (and the GPU when present), the
fraction of a training step spent making data (goal: < 20 %), and the time to draw 10^4 posterior
samples for one event (goal for the inference benchmark: <= 1 s on 2 CPU cores). Everything is
measured in one run, on the model of the given config.

    python benchmarks/bench_training.py [--config config/config.yaml] [--threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    from gwnpe.stages.workflow import load_config
    from gwnpe.nn.simulator import Simulator, TrainingData
    from gwnpe.gw.domain import build_domain
    from gwnpe.nn.model import build_model
    from gwnpe.gw.priors import load_priors, sampled_keys
    from gwnpe.products.psd import psd_on_domain
    from gwnpe.products.training_set import load_training_set
    from gwnpe.products.basis import load_basis
    from gwnpe.nn.training import prior_standardisation

    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _products import build_products

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="config/config.yaml")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="512,4096")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--workdir", default=None, help="reuse products in this folder (default: a temporary one)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="gwnpe-bench-"))
    t0 = time.perf_counter()
    p = build_products(cfg, work, bank_size=4000, training_size=8192, threads=args.threads)
    print(f"# products ({cfg['run']} config, reduced sizes) ready in {time.perf_counter() - t0:.0f} s under {work}")
    dom = build_domain(cfg)
    basis = load_basis(p["basis"])
    asds = np.sqrt([psd_on_domain(p["psds"][i], dom) for i in cfg["detectors"]])
    priors = load_priors(cfg["priors"])
    names = sampled_keys(priors)
    ts = load_training_set(p["training_set"])
    data = TrainingData(ts.parameters, ts.h_plus, ts.h_cross)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for dev in devices:
        sim = Simulator(basis.V, basis.asd_reference, asds, dom.frequencies, cfg["detectors"], cfg["trigger_time"],
                        priors, cfg["waveform"]["reference_distance"]).to(dev)
        mean, std = prior_standardisation(priors, names, cfg["seed"], n=20000)
        settings = {"model": cfg["model"], "parameters": names, "detectors": cfg["detectors"], "n_bins": len(dom),
                    "basis_size": basis.size}
        model = build_model(settings, torch.from_numpy(basis.V), mean, std).to(dev)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        n_par = sum(q.numel() for q in model.parameters())
        for B in map(int, args.batches.split(",")):
            g = torch.Generator().manual_seed(0)
            idx = torch.randint(len(data), (B,), generator=g)
            theta, d = sim.batch(data, idx, names, g)

            def data_only():
                sim.batch(data, idx, names, g)

            def step(theta=theta, d=d):
                loss = model.loss(theta, d)
                opt.zero_grad()
                loss.backward()
                opt.step()

            def both():
                th, dd = sim.batch(data, idx, names, g)
                step(th, dd)

            reps = max(2, args.repeats if B <= 1024 else args.repeats // 2)
            t_data, t_step, t_both = _time(data_only, reps), _time(step, reps), _time(both, reps)
            rows.append((dev, B, n_par, B / t_data, B / t_step, B / t_both, t_data / t_both))
        # posterior sampling for one event
        model.eval()
        d1 = d[:1]
        t_s = _time(lambda: model.sample_and_log_prob(d1, 10_000), 3)
        print_table(rows, (dev, t_s), cfg, args.threads)
        rows = []


def print_table(rows, sampling, cfg, threads):
    print(f"\n## training throughput ({cfg['run']} config: {len(cfg['detectors'])} detectors, "
          f"embedding {cfg['model']['embedding']['widths']}, NSF {cfg['model']['flow']['transforms']} transforms; "
          f"{threads} CPU threads)")
    print(f"{'device':>6} {'batch':>6} {'params':>9} {'data/s':>10} {'step/s':>10} {'both/s':>10} {'data share':>11}  goal <0.20")
    for dev, B, n_par, a, b, c, share in rows:
        print(f"{dev:>6} {B:>6} {n_par:>9} {a:>10.0f} {b:>10.0f} {c:>10.0f} {share:>11.2f}  {'ok' if share < 0.2 else 'MISSED'}")
    if sampling:
        dev, t = sampling
        print(f"\n10^4 posterior samples (flow + log prob, one event, {dev}): {t:.2f} s")


if __name__ == "__main__":
    main()
