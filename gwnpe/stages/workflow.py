"""What Snakemake needs from gwnpe when it builds the DAG: the whole config checked before any job
starts (schema, cross-key rules, the prior file against the waveform model and the segment), the
number of injections, and the compared injections. Imported by ``rules/common.smk`` (torch is not
imported here)."""

from __future__ import annotations

from ..config import read_config, validate_config
from ..errors import ComparisonError, ConfigError
from .resources import check_resources


def check_config(config: dict) -> dict:
    """Validate a config completely, before any job starts: the schema and cross-key rules
    (:func:`gwnpe.config.validate_config`, which fills in defaults), then the prior file against
    the waveform model and the segment (:func:`gwnpe.gw.waveforms.check_signal_duration`), the noise
    curves, marginalisation and GNPE against the prior, and the memory and disk the stages will need
    (:func:`gwnpe.stages.resources.check_resources`)."""
    from ..gw.priors import load_priors
    from ..gw.waveforms import check_signal_duration

    validate_config(config)
    priors = load_priors(config["priors"], approximant=config["waveform"]["approximant"])
    check_signal_duration(config, priors)
    check_noise_curves(config)
    check_marginalization(config)
    check_gnpe(config, priors)
    check_events(config, priors)
    check_asd_dataset(config)
    check_resources(config)
    return config


def check_gnpe(config: dict, priors) -> None:
    """GNPE shifts each detector's strain by its arrival time: the prior must sample what that depends on."""
    from ..gw.priors import check_arrival_time_parameters

    if config["model"]["gnpe"]["enabled"]:
        check_arrival_time_parameters(priors, config["priors"])


def event_entry(config: dict, name: str) -> dict:
    """The ``events.list`` entry called ``name`` (``channels`` defaulted to none)."""
    for ev in config["events"]["list"]:
        if ev["name"] == name:
            return {"channels": {}, **ev}
    raise ConfigError(f"no event named '{name}' in events.list; the names are "
                      f"{[e['name'] for e in config['events']['list']]}.")


def check_asd_dataset(config: dict) -> None:
    """``asd_dataset`` with source files: a file per detector, channels for GWF, and a span holding a window;
    a noise-conditioned network needs the dataset, and training ASDs left after the held-out part."""
    cfg = config["asd_dataset"]
    nc = config["model"]["noise_conditioning"]
    if nc["enabled"]:
        if not cfg["size"]:
            raise ConfigError("model.noise_conditioning.enabled is true but asd_dataset.size is 0: a noise-conditioned "
                              "network is trained over the ASD dataset; set asd_dataset.size (e.g. 1000) or switch "
                              "noise conditioning off.")
        if cfg["size"] - int(round(nc["held_out_fraction"] * cfg["size"])) < 1:
            raise ConfigError(f"asd_dataset.size = {cfg['size']} leaves no training ASD after "
                              f"model.noise_conditioning.held_out_fraction = {nc['held_out_fraction']}; raise the size.")
    if config["injections"]["asd_source"] == "held_out":
        n_held = int(round(nc["held_out_fraction"] * cfg["size"]))
        if n_held < 1:
            raise ConfigError(f"injections.asd_source is held_out, but asd_dataset.size = {cfg['size']} x "
                              f"model.noise_conditioning.held_out_fraction = {nc['held_out_fraction']} holds out no ASD; "
                              "set asd_dataset.size > 0 and a fraction that holds out at least one.")
    if not cfg["size"] or cfg["source"] != "files":
        return
    ifos = list(config["detectors"])
    missing = [d for d in ifos if d not in cfg["strain_files"]]
    if missing:
        raise ConfigError(f"asd_dataset.source is files, but asd_dataset.strain_files has no file for {missing}; give "
                          f"one per detector of the run {ifos}.")
    for ifo in ifos:
        path = cfg["strain_files"][ifo]
        if str(path).lower().endswith(".gwf") and not cfg["channels"].get(ifo):
            raise ConfigError(f"asd_dataset.strain_files.{ifo} = '{path}' is a GWF frame file, which needs a channel "
                              f"name: set asd_dataset.channels.{ifo}.")
    length = float(cfg["segments"]) * float(config["domain"]["duration"])
    if cfg["gps_start"] is None or cfg["gps_end"] is None or float(cfg["gps_end"]) - float(cfg["gps_start"]) < length:
        raise ConfigError(f"asd_dataset.source is files: give asd_dataset.gps_start and gps_end spanning at least one "
                          f"window of asd_dataset.segments x domain.duration = {length:g} s (they are "
                          f"{cfg['gps_start']} and {cfg['gps_end']}).")


def check_events(config: dict, priors) -> None:
    """``events.list``: unique names, strain files for exactly the run's detectors, channels for GWF files,
    and, for an event away from ``trigger_time``, a right-ascension prior the sky rotation keeps (uniform
    over the circle; see :func:`gwnpe.inference.sampling.at_gps_time`)."""
    from ..gw.priors import uniform_over_the_sky_circle

    events = config["events"]["list"]
    names = [e["name"] for e in events]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"events.list names {dup[0]} more than once; give every event its own name.")
    ifos = list(config["detectors"])
    psd_duration = config["events"]["psd_duration"]
    if events and psd_duration is not None and float(psd_duration) < float(config["domain"]["duration"]):
        raise ConfigError(f"events.psd_duration = {psd_duration} s is shorter than one Welch segment of domain.duration "
                          f"= {config['domain']['duration']} s; give several segments (null: 32, as bilby_pipe).")
    for i, ev in enumerate(events):
        where = f"events.list[{i}] ({ev['name']})"
        files = ev["strain_files"]
        if sorted(files) != sorted(ifos):
            missing, extra = [d for d in ifos if d not in files], [d for d in files if d not in ifos]
            raise ConfigError(f"{where}: strain_files must give one file per detector of the run {ifos}"
                              + (f"; missing {missing}" if missing else "") + (f"; not analysed {extra}" if extra else "")
                              + ".")
        channels = ev.get("channels") or {}
        for ifo, path in files.items():
            if str(path).lower().endswith(".gwf") and not channels.get(ifo):
                raise ConfigError(f"{where}: strain_files.{ifo} = '{path}' is a GWF frame file, which needs a channel "
                                  f"name: set channels: {{{ifo}: <channel>}} (e.g. {ifo}:GWOSC-4KHZ_R1_STRAIN).")
        if float(ev["gps_time"]) != float(config["trigger_time"]) and not uniform_over_the_sky_circle(priors):
            ra = priors.get("ra")
            raise ConfigError(
                f"{where}: gps_time {ev['gps_time']} is not the model's trigger_time {config['trigger_time']}, "
                f"and the prior file '{config['priors']}' gives ra = {ra!r}: a model serves other times only with "
                "ra = Uniform(0, 2 pi) (its sky is rotated by the sidereal-time difference). Use that ra prior "
                "or set trigger_time to the event's time.")


def needs_distance_lookup(config: dict) -> bool:
    """Whether the comparison's reference runs marginalise over distance (and so need bilby's lookup table)."""
    from ..gw.likelihood import marginalized
    from ..gw.priors import load_priors

    if not config["comparison"]["injections"]:
        return False
    priors = load_priors(config["priors"], approximant=config["waveform"]["approximant"])
    return "distance" in marginalized(config["comparison"]["likelihood"]["marginalization"], priors)


def check_marginalization(config: dict) -> None:
    """Phase marginalisation of the reference runs only where it is exact ((2,2)-only aligned-spin
    waveforms), checked when a comparison is on."""
    from ..gw.likelihood import QUADRUPOLE_ALIGNED

    approximant = config["waveform"]["approximant"]
    model_marg = list(config["model"].get("marginalized") or [])
    if "phase" in model_marg and approximant not in QUADRUPOLE_ALIGNED:
        raise ConfigError(
            f"model.marginalized includes 'phase', but waveform.approximant = {approximant} has higher modes or "
            f"precession, for which phase marginalisation is wrong (exact only for {', '.join(QUADRUPOLE_ALIGNED)}). "
            f"Use model.marginalized: {[m for m in model_marg if m != 'phase']}.")
    if "time" in model_marg and (config["model"].get("gnpe") or {}).get("enabled"):
        raise ConfigError("model.marginalized includes 'time' and model.gnpe.enabled is true: GNPE standardises the "
                          "arrival times the network infers, time marginalisation removes them from the network. "
                          "Choose one: drop 'time' from model.marginalized or set model.gnpe.enabled: false.")
    if model_marg:
        from ..gw.likelihood import MARGINALIZED
        from ..gw.priors import load_priors, sampled_keys

        priors = load_priors(config["priors"], approximant=approximant)
        fixed = [m for m in model_marg if MARGINALIZED[m] not in sampled_keys(priors)]
        if fixed:
            raise ConfigError(f"model.marginalized names {', '.join(fixed)}, which the prior file '{config['priors']}' "
                              f"does not sample; remove {'it' if len(fixed) == 1 else 'them'} from model.marginalized.")
    cmp = config["comparison"]
    if not cmp["injections"]:
        return
    if "phase" in cmp["likelihood"]["marginalization"] and approximant not in QUADRUPOLE_ALIGNED:
        rest = [m for m in cmp["likelihood"]["marginalization"] if m != "phase"]
        raise ConfigError(
            f"comparison.likelihood.marginalization includes 'phase', but waveform.approximant = {approximant} has "
            f"higher modes or precession, for which bilby's phase marginalisation is wrong (it is exact only for "
            f"{', '.join(QUADRUPOLE_ALIGNED)}). Use comparison.likelihood.marginalization: {rest}."
        )


def check_noise_curves(config: dict) -> None:
    """Every configured noise curve can be read, and, where it simulates the noise (``psd.source:
    simulated``), covers the analysis band with finite positive values.

    Raises
    ------
    ConfigError
        Naming the curve, the detector, the band it covers and the fix.
    """
    import numpy as np

    from ..gw.domain import build_domain
    from ..gw.noise import load_noise_curve

    curve = config["psd"]["noise_curve"]
    band = build_domain(config).frequencies
    for ifo in config["detectors"]:
        name = curve[ifo] if isinstance(curve, dict) else curve
        psd = load_noise_curve(name, band)
        bad = ~(np.isfinite(psd) & (psd > 0))
        if config["psd"]["source"] == "simulated" and bad.any():
            ok = band[~bad]
            covered = f"{ok[0]:g}-{ok[-1]:g} Hz" if ok.size else "none of it"
            raise ConfigError(
                f"psd.noise_curve '{name}' ({ifo}) covers {covered} of the analysis band {band[0]:g}-{band[-1]:g} Hz: "
                f"{int(bad.sum())} of {band.size} band bins would get no simulated noise, and whitening would amplify "
                "them enormously. Use a curve that covers domain.f_min to domain.f_max, or restrict the band."
            )


def load_config(path) -> dict:
    """Read a YAML config file and check it completely (see :func:`check_config`)."""
    return check_config(read_config(path))


def injection_count(config: dict) -> int:
    """Number of injections: ``injections.count``, or the rows of ``injections.file``."""
    inj = config["injections"]
    if inj["file"]:
        from ..gw.priors import load_priors, sampled_keys
        from ..products.injections import check_injections_in_prior, read_injection_file

        priors = load_priors(config["priors"])
        table = read_injection_file(inj["file"], sampled_keys(priors))
        check_injections_in_prior(priors, table, inj["file"])
        return len(next(iter(table.values())))
    return inj["count"]


def comparison_indices(comparison: dict, n_injections: int) -> list[int]:
    """The injection indices named by ``comparison.injections`` (a count or a list), checked against the campaign."""
    spec = comparison["injections"]
    if isinstance(spec, int):
        if spec > n_injections:
            raise ComparisonError(
                f"comparison.injections asks for the first {spec} injections, but the campaign has {n_injections}; "
                f"lower comparison.injections to at most {n_injections} or raise injections.count."
            )
        return list(range(spec))
    bad = [i for i in spec if not 0 <= int(i) < n_injections]
    if bad:
        raise ComparisonError(
            f"comparison.injections names injection index {bad[0]}"
            + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else "")
            + f", but the campaign has injections 0-{n_injections - 1}; use indices below {n_injections} "
            "or raise injections.count."
        )
    return sorted(int(i) for i in spec)


def accuracy_indices(accuracy: dict, snrs) -> list[int]:
    """The accuracy campaign's events: the first ``accuracy.injections`` injections whose network
    optimal SNR (``snrs``, in campaign order) is at least ``accuracy.min_snr``."""
    n = int(accuracy["injections"])
    return [i for i, snr in enumerate(snrs) if snr >= float(accuracy["min_snr"])][:n] if n else []
