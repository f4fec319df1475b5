"""Command-line interface.

``gwnpe ls FILE``      print the settings, inputs and package versions stored in an output
``gwnpe sample ...``   draw posterior samples for detector strain with a trained model
``gwnpe jsd A B``      per-parameter Jensen-Shannon divergences of two posterior files
``gwnpe check CONFIG`` check a config file completely, as the workflow does before any job
"""

from __future__ import annotations

import argparse
import json
import sys

from .errors import GwnpeError


def _print_tree(obj, indent: int = 0, out=sys.stdout) -> None:
    pad = "  " * indent
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v and not (isinstance(v, list) and all(not isinstance(x, (dict, list)) for x in v)):
                print(f"{pad}{k}:", file=out)
                _print_tree(v, indent + 1, out)
            elif isinstance(v, str) and "\n" in v:
                print(f"{pad}{k}: |", file=out)
                for line in v.rstrip().splitlines():
                    print(f"{pad}  {line}", file=out)
            else:
                print(f"{pad}{k}: {json.dumps(v) if not isinstance(v, str) else v}", file=out)
    elif isinstance(obj, list):
        for v in obj:
            print(f"{pad}-", file=out)
            _print_tree(v, indent + 1, out)
    else:
        print(f"{pad}{obj}", file=out)


def cmd_ls(args) -> int:
    from pathlib import Path

    from .products.common import read_provenance

    if Path(args.file).is_dir():
        print(f"gwnpe ls: '{args.file}' is a directory; give one output file of gwnpe (e.g. results/<run>/svd/basis.h5)",
              file=sys.stderr)
        return 2
    try:
        prov = read_provenance(args.file)
    except FileNotFoundError:
        print(f"gwnpe ls: '{args.file}' does not exist", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"gwnpe ls: cannot read '{args.file}': {exc}", file=sys.stderr)
        return 2
    if prov is None:
        print(f"gwnpe ls: '{args.file}' carries no gwnpe provenance", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(prov, indent=2, sort_keys=True))
        return 0
    print(f"file: {args.file}")
    _print_tree(_readable(prov, args.inputs))
    return 0


def _readable(prov: dict, ancestors: bool) -> dict:
    """Provenance for people: stored texts (prior files) in place of their hashes, inputs by path and,
    with ``ancestors``, each input's own provenance nested under it (read from the shared records)."""
    from .provenance import input_provenance

    texts = prov.get("texts", {})

    def resolve(v):
        if isinstance(v, str) and v.startswith("sha256:") and v[7:] in texts:
            return texts[v[7:]]
        if isinstance(v, dict):
            return {k: resolve(x) for k, x in v.items()}
        return v

    out = {"stage": prov.get("stage"), "settings": resolve(prov.get("settings", {}))}
    inputs = {}
    for name, ref in prov.get("inputs", {}).items():
        parent = input_provenance(prov, name) if ancestors else None
        inputs[name] = ref["path"] if parent is None else {"path": ref["path"], **_readable(parent, True)}
    out["inputs"] = inputs
    out["versions"] = prov.get("versions", {})
    return out


def _pairs(items, what):
    out = {}
    for item in items or []:
        if "=" not in item:
            raise GwnpeError(f"--{what} expects IFO=PATH (e.g. H1=data/H1.hdf5), got '{item}'")
        ifo, path = item.split("=", 1)
        out[ifo] = path
    return out


def cmd_sample(args) -> int:
    import logging
    import time

    import numpy as np

    from .errors import InferenceError
    from .inference.sampling import (analysis_psds, asd_outside_training, at_gps_time, model_domain, model_priors,
                                     psds_from_time_domain, reference_time, sample_posterior, strain_from_time_domain)
    from .products.model import load_model
    from .products.psd import psd_on_domain
    from .products.results import save_result
    from .products.strain import read_fd_strain

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    t0 = time.perf_counter()
    model = load_model(args.model, device=args.device)
    if args.gnpe_iterations is not None:
        if model.gnpe is None:
            raise GwnpeError(f"--gnpe-iterations: model '{args.model}' was not trained with GNPE (model.gnpe.enabled).")
        if args.gnpe_iterations < 1:
            raise GwnpeError(f"--gnpe-iterations {args.gnpe_iterations}: give at least 1 Gibbs iteration.")
        model.gnpe_iterations = args.gnpe_iterations
    if args.gps_time is not None:
        model = at_gps_time(model, args.gps_time)
    dom = model_domain(model)
    injection = None
    window_factor = None  # frequency-domain strain: made with the model's convention
    if len(args.strain) == 1 and "=" not in args.strain[0]:
        fd = read_fd_strain(args.strain[0])
        if not np.allclose(fd.frequencies, dom.frequencies):
            raise InferenceError(
                f"strain file '{args.strain[0]}' is on {len(fd.frequencies)} bins "
                f"{fd.frequencies[0]}-{fd.frequencies[-1]} Hz, the model on {len(dom)} bins "
                f"{dom.f_min}-{dom.f_max} Hz."
            )
        if args.gps_time is not None and abs(float(fd.trigger_time) - float(args.gps_time)) > 1e-6:
            raise InferenceError(
                f"strain file '{args.strain[0]}' holds a segment around GPS {fd.trigger_time}, but --gps-time is "
                f"{args.gps_time}; give the file's own trigger time (or leave --gps-time out for the model's).")
        strain, start, injection = fd.strain, fd.start_time, fd.injection_parameters
    else:
        strain, start, window_factor = strain_from_time_domain(model, _pairs(args.strain, "strain"), _pairs(args.channel, "channel"))
    psd_files = _pairs(args.psd, "psd")
    if psd_files:
        welch = {ifo: psd_on_domain(p, dom) for ifo, p in psd_files.items()}
    elif args.gps_time is not None and window_factor is not None:
        logging.getLogger("gwnpe").info("--gps-time without --psd: Welch PSDs from the files before the segment")
        welch = psds_from_time_domain(model, _pairs(args.strain, "strain"), _pairs(args.channel, "channel"),
                                      args.psd_duration)
    else:
        logging.getLogger("gwnpe").info("no --psd given: using the PSDs the model was trained with")
        welch = {}
    psds = analysis_psds(model, welch, window_factor)
    outside = asd_outside_training(model, psds) if welch else []
    if args.refine != "never" and args.target_ess is None:
        raise GwnpeError(f"--refine {args.refine} needs --target-ess (refinement importance-samples to a target ESS).")
    if args.target_ess is not None:
        args.importance_sampling = True
    if args.workers < 0:
        raise GwnpeError(f"--workers {args.workers}: give 0 (no dask) or a number of worker processes.")
    if args.target_ess is not None:
        out = None  # drawn batch by batch below
    else:
        out = sample_posterior(model, strain, psds, args.n, start_time=start, seed=args.seed, device=args.device)
    if injection is not None and "geocent_time" in injection:
        injection = {**injection, "geocent_time": injection["geocent_time"] + model.settings["trigger_time"]}
    meta = {"strain": args.strain, "psd": args.psd or ("estimated from the strain files" if welch else "model"),
            "gps_time": float(model.settings["trigger_time"]), "reference_time": reference_time(model),
            "ra_offset": float(model.settings.get("ra_offset", 0.0)),
            "asd_outside_training": json.dumps(outside)}  # a JSON string: HDF5 holds no list of dicts
    extra = evidence = None
    if args.importance_sampling:
        import contextlib

        from .inference.importance_sampling import (importance_result_fields, importance_sample,
                                                    importance_sample_to_target, warn_if_inefficient)

        wf = model.settings.get("waveform", {})
        approximant = args.approximant or wf.get("approximant")
        f_ref = args.reference_frequency or wf.get("reference_frequency")
        if approximant is None or f_ref is None:
            raise GwnpeError(f"model '{args.model}' does not record its waveform model; give --approximant and "
                             "--reference-frequency (the run's waveform.approximant / waveform.reference_frequency).")
        with contextlib.ExitStack() as stack:
            client = None
            if args.workers:
                from .stages.cluster import dask_client

                client = stack.enter_context(dask_client({"cluster": "local", "n_workers": args.workers}, args.workers))
            if args.refine != "never":
                from .inference.refinement import importance_sample_refined
                from .products.basis import load_basis
                from .products.model import refined_model_path, save_model

                res, refined = importance_sample_refined(
                    model, strain, psds, start, approximant, f_ref, target_ess=args.target_ess,
                    max_samples=args.max_samples or 20 * args.n, batch_size=args.n, refine=args.refine,
                    seed=0 if args.seed is None else args.seed, client=client, device=args.device,
                    basis=load_basis(args.basis) if args.basis else None)
                if refined is not None:
                    save_model(refined_model_path(args.output), refined,
                               {"stage": "refinement", "parent_model": str(args.model),
                                "parent_provenance": getattr(model, "provenance", None)}, extra=model.extra)
                out = {"samples": res["samples"], "log_q": res["log_q"], "sampling_time": res["npe_time"],
                       "acceptance": res["n"] / res["n_drawn"], **({"gnpe": res["gnpe"]} if "gnpe" in res else {})}
            elif args.target_ess is not None:
                res = importance_sample_to_target(
                    model, strain, psds, start, approximant, f_ref, target_ess=args.target_ess,
                    max_samples=args.max_samples or 20 * args.n, batch_size=args.n,
                    seed=0 if args.seed is None else args.seed, client=client, device=args.device)
                out = {"samples": res["samples"], "log_q": res["log_q"], "sampling_time": res["npe_time"],
                       "acceptance": res["n"] / res["n_drawn"], **({"gnpe": res["gnpe"]} if "gnpe" in res else {})}
            else:
                res = importance_sample(model, strain, psds, start, out["samples"], out["log_q"],
                                        args.n / out["acceptance"], approximant, f_ref, client=client,
                                        seed=0 if args.seed is None else args.seed)
                out["samples"] = {**out["samples"], **res["reconstructed"]}  # the marginalised parameters' draws
        warn_if_inefficient(res)
        extra, evidence, meta["importance_sampling"] = importance_result_fields(res)
        if "refinement" in res:
            meta["importance_sampling"]["refinement"] = res["refinement"]
    meta["acceptance"] = out["acceptance"]
    if "gnpe" in out:
        meta["gnpe"] = out["gnpe"]
    message = f"{len(out['log_q'])} samples in {out['sampling_time']:.2f} s"
    if args.importance_sampling:
        message += (f"; importance sampling {res['time']:.1f} s: ESS {res['ess']:.0f}, efficiency {res['efficiency']:.1%}, "
                    f"Pareto k-hat {res['pareto_k']:.2f}, log BF {res['log_bayes_factor']:.2f} +- {res['log_evidence_err']:.2f}")
    save_result(args.output, model, model_priors(model), out["samples"], out["log_q"], out["sampling_time"], label=args.label,
                injection_parameters=injection, meta_data=meta, extra_columns=extra, evidence=evidence)
    print(f"{message} (total {time.perf_counter() - t0:.2f} s) -> {args.output}")
    return 0


def cmd_jsd(args) -> int:
    from .diagnostics.comparison import posterior_jsd
    from .errors import ComparisonError
    from .products.results import read_result

    a, b = read_result(args.a, "first", ComparisonError), read_result(args.b, "second", ComparisonError)
    rows = posterior_jsd(a, b, args.parameters, n_bootstrap=args.bootstrap, seed=args.seed,
                         weights_a=not args.no_weights, weights_b=not args.no_weights)
    print(f"Jensen-Shannon divergence [nat] of {args.a} (A) and {args.b} (B); error: bootstrap std over {args.bootstrap}")
    print(f"{'parameter':<22}{'JSD [nat]':>12}{'error':>12}{'n_eff A':>10}{'n_eff B':>10}")
    for r in rows:
        print(f"{r['parameter']:<22}{r['jsd']:>12.5f}{r['jsd_err']:>12.5f}{r['n_eff_a']:>10.0f}{r['n_eff_b']:>10.0f}")
    if args.csv:
        from .products.common import write_csv

        write_csv(args.csv, list(rows[0]), [list(r.values()) for r in rows])
    return 0


def cmd_check(args) -> int:
    from .stages.resources import resource_table
    from .stages.workflow import comparison_indices, injection_count, load_config

    config = load_config(args.config)
    n = injection_count(config)
    comparison_indices(config["comparison"], n)
    print(f"{args.config}: valid (run '{config['run']}', {len(config['detectors'])} detectors, {n} injections)")
    print("estimated memory and disk (lower bounds):")
    print(resource_table(config))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="gwnpe", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("ls", help="print the settings, inputs and package versions stored in a gwnpe output")
    ls.add_argument("file")
    ls.add_argument("--json", action="store_true", help="machine-readable JSON")
    ls.add_argument("--inputs", action="store_true", help="also print the inputs' full provenance")
    ls.set_defaults(func=cmd_ls)
    sp = sub.add_parser("sample", help="draw posterior samples for detector strain with a trained model")
    sp.add_argument("--model", required=True, help="model.pt written by the train stage")
    sp.add_argument("--strain", nargs="+", required=True,
                    help="a gwnpe frequency-domain strain file (HDF5), or IFO=PATH time-domain files (GWOSC HDF5, GWF, TXT)")
    sp.add_argument("--channel", nargs="*", help="IFO=CHANNEL for GWF files")
    sp.add_argument("--psd", nargs="*", help="IFO=PATH gwnpe PSD files (default: the PSDs the model was trained with, "
                                             "or with --gps-time and time-domain files, Welch PSDs from the files)")
    sp.add_argument("--gps-time", type=float, default=None,
                    help="GPS time of the event (default: the trigger time the model was trained at); the network's "
                         "sky is rotated by the sidereal-time difference (needs a uniform ra prior)")
    sp.add_argument("--psd-duration", type=float, default=None,
                    help="[s] of data before the segment for the Welch PSDs of --gps-time (default 32 x the segment)")
    sp.add_argument("-n", type=int, default=10000, help="number of posterior samples")
    sp.add_argument("-o", "--output", required=True, help="bilby Result file (.hdf5 or .json)")
    sp.add_argument("--label", default="gwnpe")
    sp.add_argument("--seed", type=int, default=None)
    sp.add_argument("--device", default="cpu")
    sp.add_argument("--importance-sampling", action="store_true",
                    help="reweight the samples with the exact bilby likelihood (NPE+IS): adds columns weights, "
                         "log_likelihood, log_prior and the evidence to the result")
    sp.add_argument("--target-ess", type=float, default=None,
                    help="importance-sample in batches of -n until the effective sample size reaches this (implies "
                         "--importance-sampling)")
    sp.add_argument("--max-samples", type=int, default=None,
                    help="sample budget for --target-ess (default 20 batches of -n); stops there with a warning")
    sp.add_argument("--workers", type=int, default=0,
                    help="dask worker processes for the likelihoods of importance sampling (default 0: in this process)")
    sp.add_argument("--refine", choices=["auto", "never", "always"], default="never",
                    help="per-event refinement with --target-ess: fine-tune a copy of the network on a prior truncated "
                         "to this event's posterior when the amortised efficiency is below 1%% (auto) or always, "
                         "then importance-sample with it; the refined network is written beside -o (.refined.pt)")
    sp.add_argument("--basis", help="basis.h5 of the model's svd stage, for --refine with a model file that carries none")
    sp.add_argument("--gnpe-iterations", type=int, default=None,
                    help="Gibbs iterations for a GNPE model (default: model.gnpe.iterations it was trained with)")
    sp.add_argument("--approximant", help="waveform model for --importance-sampling (default: the model's)")
    sp.add_argument("--reference-frequency", type=float, help="[Hz] for --importance-sampling (default: the model's)")
    sp.set_defaults(func=cmd_sample)
    jp = sub.add_parser("jsd", help="per-parameter Jensen-Shannon divergences [nat] of two posterior files (bilby Results)")
    jp.add_argument("a", help="posterior file (bilby Result; its 'weights' column is used when present)")
    jp.add_argument("b", help="posterior file to compare with (e.g. a bilby + dynesty reference)")
    jp.add_argument("--parameters", nargs="+", help="parameters (default: A's search parameters that B holds)")
    jp.add_argument("--bootstrap", type=int, default=50, help="bootstrap resamplings for the error (default 50)")
    jp.add_argument("--seed", type=int, default=0)
    jp.add_argument("--no-weights", action="store_true", help="ignore 'weights' columns (e.g. NPE before importance sampling)")
    jp.add_argument("--csv", help="also write the table to this CSV file")
    jp.set_defaults(func=cmd_jsd)
    cp = sub.add_parser("check", help="check a config file completely (schema, priors, noise curves, injections), "
                                      "naming the file, line or key of any problem")
    cp.add_argument("config", help="YAML config file, e.g. config/config.yaml")
    cp.set_defaults(func=cmd_check)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except GwnpeError as exc:
        print(f"gwnpe: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
