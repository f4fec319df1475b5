"""Catalogue of bad inputs: every one is refused with a message that names the culprit and the fix.

Each case feeds one bad input to the library function of a stage (no Snakemake runs) and checks

(a) that the error is a :class:`gwnpe.errors.GwnpeError` subclass whose message names the culprit
    (config key path, file path, parameter, detector, ...) and says how to fix it (substrings);
(b) where the stage writes outputs, that the failed call left nothing in its output folder: no
    output path, no stray or temporary file that a later run could take for a finished one.

Categories (test-id prefixes)
-----------------------------
config
    Unknown key (did-you-mean, also for a key in the wrong section), wrong type, out of range,
    contradictory settings (f_min >= f_max, f_max above Nyquist, post_trigger_duration >= duration,
    a segment shorter than the prior's longest signal, a bank smaller than svd.size +
    svd.validation_size, a Welch segment longer than psd.duration, a non-integer number of samples,
    strain files for a detector not analysed), missing config / prior / noise-curve file.
prior
    Unknown parameter (did-you-mean), inverted bounds, zero-width and infinite ranges, a missing
    required parameter, precessing spins with an aligned-spin approximant, constraints that reject
    every draw -- all at config load.
waveform
    Priors where IMRPhenomD is refused by LAL (heavy masses, extreme mass ratio) or refusals above
    waveform.max_failure_fraction: the bank stage raises WaveformError naming the approximant,
    LAL's reason and the prior file, and suggests narrowing the prior.
strain
    Strain files of the PSD stage (psd.source: files): missing, garbage bytes, a text file named
    .hdf5, sampled below the domain or at a rate that does not fit a Welch segment, a gap, NaNs,
    too short for psd.duration or for one Welch segment.
inference
    A trained model (tiny config, one epoch) given strain for other detectors, on another frequency
    grid, with NaNs (frequency or time domain), time-domain files that do not cover the segment or
    have another rate, whitened strain of the wrong shape, injections made with another prior or
    for other detectors (posteriors stage).
resources
    ``training.device: cuda`` without a visible GPU: :func:`gwnpe.nn.training.select_device` raises
    before the train stage reads or writes anything (``auto`` falls back to the CPU; the GPU is
    hidden with a monkeypatch, so the test also runs on GPU machines).
corrupt
    Truncated or incomplete stage outputs (bank, basis, PSD, training set, model, injections) given
    to the next stage: the error names the file and the stage that makes it.

"""

from __future__ import annotations

import copy
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

from gwnpe.errors import (
    ConfigError,
    GwnpeError,
    ModelError,
    PriorError,
    StrainError,
    WaveformError,
)

from tests.conftest import REPO, noise_event, train_model

#: settings of the posteriors stage in these tests
POSTERIOR_SETTINGS = {"seed": 1, "injections": {"n_samples": 50, "batch_events": 16}}

DEFAULT_PRIOR = (REPO / "config/priors/default.prior").read_text()


# ----------------------------------------------------------------------------- helpers


def _message(excinfo) -> str:
    return str(excinfo.value)


def assert_names(excinfo, *needles: str) -> None:
    """Every needle (culprit and fix) occurs in the error message."""
    msg = _message(excinfo)
    missing = [n for n in needles if n not in msg]
    assert not missing, f"{missing} not in message: {msg}"


def assert_nothing_written(folder: Path) -> None:
    """The failed call left no file (finished-looking or temporary) in its output folder."""
    left = sorted(p.relative_to(folder) for p in Path(folder).rglob("*")) if Path(folder).exists() else []
    assert left == [], f"failed call left {left} in {folder}"


def _raw_config() -> dict:
    return yaml.safe_load((REPO / "config/tiny.yaml").read_text())


def _write_prior(folder: Path, text: str, name: str = "bad.prior") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def _write_gwosc(path: Path, t0: float, fs: float, data) -> Path:
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("strain/Strain", data=np.asarray(data, dtype=np.float64))
        ds.attrs["Xstart"] = t0
        ds.attrs["Xspacing"] = 1.0 / fs
    return path


def _truncate(src: Path, dst: Path, fraction: float = 0.5) -> Path:
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * fraction)])
    return Path(dst)


# ----------------------------------------------------------------------------- config


def _short_curve(folder):
    """An ASD file covering 10-100 Hz only (the band is 20-256 Hz)."""
    path = folder / "short_curve.txt"
    np.savetxt(path, np.c_[np.linspace(10, 100, 50), np.full(50, 1e-23)])
    return path


CONFIG_CASES = [
    pytest.param(lambda c, d: c["domain"].update(fmax=200.0), ConfigError,
                 ["unknown config key 'domain.fmax'", "did you mean 'domain.f_max'?", "Remove or rename it"],
                 id="config-unknown-key-typo"),
    pytest.param(lambda c, d: c.update(epochs=3), ConfigError,
                 ["unknown config key 'epochs'", "did you mean 'training.epochs'", "Move it there"],
                 id="config-unknown-key-wrong-section"),
    pytest.param(lambda c, d: c.update(outdir="results"), ConfigError,
                 ["unknown config key 'outdir'", "remove or rename it", "allowed keys here: accuracy, asd_dataset, bank"],
                 id="config-unknown-key-no-match"),
    pytest.param(lambda c, d: c["training"].update(epochs="ten"), ConfigError,
                 ["'training.epochs'", "'ten'", "type integer", "set 'training.epochs' to such a value"],
                 id="config-wrong-type-string-for-integer"),
    pytest.param(lambda c, d: c.update(detectors="H1"), ConfigError,
                 ["'detectors'", "'H1'", "type array", "set 'detectors' to such a value", "['H1', 'L1']"],
                 id="config-wrong-type-scalar-for-list"),
    pytest.param(lambda c, d: c["injections"].update(n_samples=5), ConfigError,
                 ["'injections.n_samples'", "5", ">= 10", "set 'injections.n_samples' to such a value"],
                 id="config-out-of-range-minimum"),
    pytest.param(lambda c, d: c["psd"].update(overlap=1.0), ConfigError,
                 ["'psd.overlap'", "1.0", "< 1", "set 'psd.overlap' to such a value", "default, 0.5"],
                 id="config-out-of-range-exclusive-maximum"),
    pytest.param(lambda c, d: c["domain"].update(f_min=256.0), ConfigError,
                 ["domain.f_min = 256.0", "domain.f_max = 256.0", "Lower domain.f_min or raise domain.f_max"],
                 id="config-f_min-equals-f_max"),
    pytest.param(lambda c, d: c["domain"].update(sampling_frequency=256.0), ConfigError,
                 ["domain.f_max = 256.0", "Nyquist frequency 128.0", "raise domain.sampling_frequency to at least 512"],
                 id="config-f_max-above-nyquist"),
    pytest.param(lambda c, d: c["domain"].update(post_trigger_duration=4.0), ConfigError,
                 ["domain.post_trigger_duration = 4.0", "domain.duration = 4.0",
                  "Lower domain.post_trigger_duration", "raise domain.duration"],
                 id="config-post_trigger-not-shorter-than-duration"),
    pytest.param(lambda c, d: c["domain"].update(duration=1.0, post_trigger_duration=0.5), ConfigError,
                 ["domain.duration - domain.post_trigger_duration", "0.5 s before the trigger",
                  "default.prior", "lasts 1.36 s", "wrap around", "Raise domain.duration to at least",
                  "raise domain.f_min"],
                 id="config-segment-shorter-than-signal"),
    pytest.param(lambda c, d: c["bank"].update(size=195), ConfigError,
                 ["bank.size = 195", "svd.size + svd.validation_size = 96 + 100", "Raise bank.size or lower svd.size"],
                 id="config-bank-smaller-than-svd-plus-validation"),
    pytest.param(lambda c, d: c["bank"].update(size=10**12), ConfigError,
                 ["the bank stage would need at least", "TB of memory", "bank.size", "of this machine",
                  "Lower bank.size", "set limits.memory_gb"],
                 id="config-bank-beyond-memory"),
    pytest.param(lambda c, d: (c["training_set"].update(size=10**11), c.update(limits={"memory_gb": 1.0e9})), ConfigError,
                 ["the run's outputs would need at least", "in the training_set stage", "training_set.size",
                  "free under results/", "Lower training_set.size", "set limits.disk_gb"],
                 id="config-training-set-beyond-disk"),
    pytest.param(lambda c, d: c.update(limits={"memory_gb": 0.001}), ConfigError,
                 ["the psd stage would need at least", "of limits.memory_gb", "Lower psd.duration"],
                 id="config-limits-memory-below-a-stage"),
    pytest.param(lambda c, d: c.update(events={"list": [
                     {"name": "GWa", "gps_time": 1187008882.4, "strain_files": {"H1": "h.hdf5", "L1": "l.hdf5"}},
                     {"name": "GWa", "gps_time": 1187008900.0, "strain_files": {"H1": "h.hdf5", "L1": "l.hdf5"}}]}),
                 ConfigError, ["events.list names GWa more than once", "its own name"], id="config-event-names-repeated"),
    pytest.param(lambda c, d: c.update(events={"list": [
                     {"name": "GWb", "gps_time": 1187008882.4, "strain_files": {"H1": "h.hdf5", "V1": "v.hdf5"}}]}),
                 ConfigError, ["events.list[0] (GWb)", "one file per detector", "missing ['L1']", "not analysed ['V1']"],
                 id="config-event-strain-files-for-other-detectors"),
    pytest.param(lambda c, d: c.update(events={"list": [
                     {"name": "GWc", "gps_time": 1187008882.4, "strain_files": {"H1": "h.gwf", "L1": "l.hdf5"}}]}),
                 ConfigError, ["events.list[0] (GWc)", "strain_files.H1 = 'h.gwf'", "set channels: {H1: <channel>}"],
                 id="config-event-gwf-without-channel"),
    pytest.param(lambda c, d: c.update(events={"psd_duration": 2.0, "list": [
                     {"name": "GWe", "gps_time": 1187008882.4, "strain_files": {"H1": "h.hdf5", "L1": "l.hdf5"}}]}),
                 ConfigError, ["events.psd_duration = 2.0 s", "domain.duration = 4.0 s", "give several segments"],
                 id="config-event-psd-window-shorter-than-a-segment"),
    pytest.param(lambda c, d: (_fixed_ra_prior(c, d), c.update(events={"list": [
                     {"name": "GWd", "gps_time": 1187012482.4, "strain_files": {"H1": "h.hdf5", "L1": "l.hdf5"}}]})),
                 ConfigError, ["events.list[0] (GWd)", "is not the model's trigger_time", "ra = Uniform(0, 2 pi)",
                               "set trigger_time to the event's time"],
                 id="config-event-at-another-time-with-a-fixed-sky"),
    pytest.param(lambda c, d: c.update(asd_dataset={"size": 10, "source": "files", "strain_files": {"H1": "h.hdf5"}}),
                 ConfigError, ["asd_dataset.strain_files has no file for ['L1']", "one per detector"],
                 id="config-asd-dataset-files-missing-a-detector"),
    pytest.param(lambda c, d: c.update(asd_dataset={"size": 10, "source": "files", "gps_start": 100.0, "gps_end": 150.0,
                                                    "strain_files": {"H1": "h.hdf5", "L1": "l.hdf5"}}),
                 ConfigError, ["asd_dataset.gps_start and gps_end", "at least one window", "128 s"],
                 id="config-asd-dataset-span-shorter-than-a-window"),
    pytest.param(lambda c, d: c["psd"].update(segment_length=300.0), ConfigError,
                 ["psd.segment_length = 300.0", "psd.duration = 256.0",
                  "Raise psd.duration or shorten psd.segment_length"],
                 id="config-welch-segment-longer-than-psd-duration"),
    pytest.param(lambda c, d: c["domain"].update(duration=4.001), ConfigError,
                 ["domain.duration x domain.sampling_frequency", "4.001", "not a whole number of samples",
                  "Choose values whose product is an integer"],
                 id="config-samples-not-whole"),
    pytest.param(lambda c, d: c["psd"].update(strain_files={"H1": "a.hdf5", "L1": "b.hdf5", "V1": "c.hdf5"}),
                 ConfigError, ["psd.strain_files names V1", "Remove that entry", "add the detector to detectors"],
                 id="config-strain-file-for-detector-not-analysed"),
    pytest.param(lambda c, d: c["psd"].update(strain_files={"H1": "a.hdf5", "L1": "b.hdf5"}), ConfigError,
                 ["psd.strain_files is set", "psd.source is 'simulated'", "would be ignored", "Set psd.source: files",
                  "remove psd.strain_files"],
                 id="config-strain-files-with-simulated-source"),
    pytest.param(lambda c, d: c["psd"].update(noise_curve=str(_short_curve(d))), ConfigError,
                 ["short_curve.txt", "(H1) covers 20-100 Hz of the analysis band 20-256 Hz", "no simulated noise",
                  "covers domain.f_min to domain.f_max"],
                 id="config-noise-curve-does-not-cover-the-band"),
    pytest.param(lambda c, d: c["psd"].update(noise_curve="aLIGO_O4_hihg_asd.txt"), ConfigError,
                 ["aLIGO_O4_hihg_asd.txt", "neither an existing file nor a bilby curve", "aLIGO_O4_high_asd.txt"],
                 id="config-misspelt-noise-curve-before-any-job"),
    pytest.param(lambda c, d: c["psd"].update(noise_curve=str(REPO / "README.md")), ConfigError,
                 ["README.md", "not a two-column text file"],
                 id="config-noise-curve-not-a-curve-before-any-job"),
    pytest.param(lambda c, d: c["svd"].update(size=1000) or c["bank"].update(size=1200), ConfigError,
                 ["svd.size = 1000", "945 frequency bins", "Lower svd.size to at most 945"],
                 id="config-basis-larger-than-the-band-before-any-job"),
    pytest.param(lambda c, d: c["psd"].update(source="files", strain_files={"H1": "H.gwf", "L1": "L.gwf"}), ConfigError,
                 ["psd.strain_files.H1 = 'H.gwf'", "GWF frame file", "set psd.channels.H1"],
                 id="config-gwf-without-channel-before-any-job"),
    pytest.param(lambda c, d: c["training"].update(learning_rate="1e-3"), ConfigError,
                 ["'training.learning_rate'", "'1e-3'", "reads 1e-3 as a string", "with a decimal point, 1.0e-3"],
                 id="config-yaml11-number-read-as-string"),
    pytest.param(lambda c, d: c.update(domain="{f_min: 30}"), ConfigError,
                 ["'domain'", "--config passes nested values as strings", "--configfile"],
                 id="config-nested-value-from-command-line"),
    pytest.param(lambda c, d: c.update(priors=str(d)), PriorError,
                 ["is a directory", "set 'priors' in the config to a bilby prior file"],
                 id="config-prior-file-is-a-directory"),
    pytest.param(lambda c, d: c.update(run=".."), ConfigError,
                 ["'run'", "'..'", "plain folder name", "results/{run}/"],
                 id="config-run-name-outside-results"),
    pytest.param(lambda c, d: c["psd"].update(noise_curve={"H1": "aLIGO_O4_high_asd.txt"}), ConfigError,
                 ["psd.noise_curve", "no curve for L1", "'L1: <curve>'"],
                 id="config-noise-curve-mapping-misses-detector"),
    pytest.param(lambda c, d: _gnpe_with_fixed_sky(c, d), ConfigError,
                 ["model.gnpe.enabled", "fixed_sky.prior", "fixes or lacks ra, dec", "model.gnpe.enabled: false"],
                 id="config-gnpe-with-a-fixed-sky-position"),
    pytest.param(lambda c, d: c.update(priors=str(d / "missing.prior")), PriorError,
                 ["missing.prior", "does not exist", "set 'priors' in the config"],
                 id="config-missing-prior-file"),
]


def _fixed_ra_prior(c, d):
    text = (REPO / "config" / "priors" / "default.prior").read_text().splitlines()
    (d / "fixed_ra.prior").write_text("\n".join("ra = 1.0" if line.startswith("ra =") else line for line in text) + "\n")
    c["priors"] = str(d / "fixed_ra.prior")


def _gnpe_with_fixed_sky(c, d):
    text = (REPO / "config" / "priors" / "default.prior").read_text().splitlines()
    text = [("ra = 1.0" if line.startswith("ra =") else "dec = 0.2" if line.startswith("dec =") else line) for line in text]
    (d / "fixed_sky.prior").write_text("\n".join(text) + "\n")
    c["priors"] = str(d / "fixed_sky.prior")
    c.setdefault("model", {})["gnpe"] = {"enabled": True}


@pytest.mark.parametrize("mutate, error, needles", CONFIG_CASES)
def test_config(mutate, error, needles, tmp_path):
    from gwnpe.stages.workflow import check_config

    raw = _raw_config()
    mutate(raw, tmp_path)
    with pytest.raises(error) as info:
        check_config(raw)
    assert_names(info, *needles)


def test_config_missing_file(tmp_path):
    from gwnpe.stages.workflow import load_config

    path = tmp_path / "my_run.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert_names(info, str(path), "does not exist", "pass the path of a YAML config", "config/config.yaml")


def test_config_missing_noise_curve_file(config, tmp_path):
    """A noise-curve path that does not exist is caught by the PSD stage, which then writes nothing."""
    from gwnpe.stages.psd import run_psd_stage

    config["psd"]["noise_curve"] = str(tmp_path / "my_asd.txt")
    out = tmp_path / "out"
    with pytest.raises(ConfigError) as info:
        run_psd_stage("H1", config, out_psd=out / "H1_psd.txt", out_plot=out / "H1_psd.png")
    assert_names(info, "my_asd.txt", "neither an existing file nor a bilby curve", "Set psd.noise_curve",
                 "aLIGO_O4_high_asd.txt")
    assert_nothing_written(out)


# ----------------------------------------------------------------------------- priors


def _replace(old: str, new: str):
    def edit(text: str) -> str:
        assert old in text
        return text.replace(old, new)

    return edit


PRIOR_CASES = [
    pytest.param(lambda t: t + "chirpmass = Uniform(name='chirpmass', minimum=20, maximum=40)\n",
                 ["'chirpmass'", "did you mean 'chirp_mass'?", "Remove or rename it"],
                 id="prior-unknown-parameter"),
    pytest.param(_replace("minimum=20.0, maximum=40.0", "minimum=40.0, maximum=20.0"),
                 ["'chirp_mass'", "minimum=40.0 >= maximum=20.0", "Make minimum < maximum"],
                 id="prior-inverted-bounds"),
    pytest.param(_replace("minimum=0.25, maximum=1.0", "minimum=0.5, maximum=0.5"),
                 ["'mass_ratio'", "empty or inverted range", "fix 'mass_ratio' to a single value"],
                 id="prior-zero-width-range"),
    pytest.param(_replace("maximum=2000.0", "maximum=np.inf"),
                 ["'luminosity_distance'", "finite range", "[100.0, inf]", "Give it finite minimum and maximum"],
                 id="prior-infinite-range"),
    pytest.param(lambda t: "\n".join(line for line in t.splitlines() if not line.startswith("theta_jn")),
                 ["does not define theta_jn", "give each a prior or a fixed value"],
                 id="prior-missing-required-parameter"),
    pytest.param(lambda t: t.replace("a_1 = 0.0", "a_1 = Uniform(name='a_1', minimum=0, maximum=0.9)")
                 .replace("tilt_1 = 0.0", "tilt_1 = Sine(name='tilt_1')"),
                 ["samples tilt_1", "IMRPhenomD is an aligned-spin approximant", "choose a precessing approximant"],
                 id="prior-precessing-spin-with-aligned-approximant"),
    pytest.param(_replace("minimum=-0.1, maximum=0.1", "minimum=2.5, maximum=3.0"),
                 ["geocent_time in [2.5, 3] s", "relative to trigger_time", "spans [-2, 2] s", "outside the data",
                  "Uniform(minimum=-0.1, maximum=0.1)"],
                 id="prior-geocent-time-after-the-segment"),
    pytest.param(_replace("minimum=-0.1, maximum=0.1", "minimum=1187008882.3, maximum=1187008882.5"),
                 ["looks like an absolute GPS time", "relative to trigger_time", "outside the data"],
                 id="prior-geocent-time-absolute-gps"),
    pytest.param(_replace("minimum=100.0, maximum=2000.0", "minimum=-100.0, maximum=2000.0"),
                 ["'luminosity_distance'", "[-100, 2000]", "physical range (0, inf]", "positive",
                  "Give 'luminosity_distance' a prior inside that range"],
                 id="prior-negative-distance-minimum"),
    pytest.param(_replace("luminosity_distance = bilby.core.prior.PowerLaw(alpha=2, name='luminosity_distance', "
                          "minimum=100.0, maximum=2000.0, unit='Mpc')", "luminosity_distance = -400.0"),
                 ["'luminosity_distance'", "the fixed value -400", "positive"],
                 id="prior-fixed-negative-distance"),
    pytest.param(_replace("dec = bilby.core.prior.Cosine(name='dec')",
                          "dec = bilby.core.prior.Uniform(name='dec', minimum=-2.0, maximum=2.0)"),
                 ["'dec'", "[-2, 2]", "[-1.5708, 1.5708]", "declination"],
                 id="prior-declination-outside-its-range"),
    pytest.param(_replace("theta_jn = bilby.core.prior.Sine(name='theta_jn')",
                          "theta_jn = bilby.core.prior.Uniform(name='theta_jn', minimum=0.0, maximum=4.0)"),
                 ["'theta_jn'", "[0, 4]", "[0, 3.14159]", "inclination"],
                 id="prior-inclination-outside-its-range"),
    pytest.param(_replace("minimum=0.0, maximum=np.pi, boundary='periodic')", "minimum=0.0, maximum=10.0, boundary='periodic')"),
                 ["'psi'", "[0, 10]", "pi-periodic", "one period"],
                 id="prior-psi-over-several-periods"),
    pytest.param(_replace("maximum=40.0, unit", "maximum=[40.0][0], unit"),
                 ["line 3", "Prior files are data"],
                 id="prior-list-value-refused"),
    pytest.param(lambda t: t + "mass_1 = Constraint(name='mass_1', minimum=500, maximum=600)\n",
                 ["mass_1 in [500, 600]", "reject all of", "prior volume is empty", "Widen the Constraint ranges"],
                 id="prior-constraint-rejects-every-draw"),
]


@pytest.mark.parametrize("edit, needles", PRIOR_CASES)
def test_prior(edit, needles, tmp_path):
    """Prior problems stop the run at config load, naming the prior file."""
    from gwnpe.stages.workflow import check_config

    prior = _write_prior(tmp_path, edit(DEFAULT_PRIOR))
    raw = _raw_config()
    raw["priors"] = str(prior)
    with pytest.raises(PriorError) as info:
        check_config(raw)
    assert_names(info, str(prior), *needles)


@pytest.mark.parametrize("command", ["sample", "ls"])
def test_cli_given_a_directory(command, tmp_path):
    """`gwnpe sample --model DIR` and `gwnpe ls DIR` say it is a directory and which file to give."""
    import subprocess
    import sys

    args = ["--model", str(tmp_path), "--strain", "H1=x.hdf5", "-o", str(tmp_path / "o.hdf5")] if command == "sample" \
        else [str(tmp_path)]
    res = subprocess.run([sys.executable, "-m", "gwnpe.cli", command, *args], capture_output=True, text=True)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "is a directory" in res.stderr and ("model.pt" in res.stderr or "basis.h5" in res.stderr), res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "o.hdf5").exists()


@pytest.mark.parametrize("text, needles", [
    ("run: x\ndomain:\n\tf_min: 20\n", ["my.yaml", "line 3", "not valid YAML", "indent with spaces"]),
    ("run: [unclosed\n", ["my.yaml", "line 1", "not valid YAML", "Fix the line named above"]),
    (None, ["my.yaml", "does not exist", "pass the path of a YAML config"]),
], ids=["tab-indentation", "syntax-error", "missing-file"])
def test_gwnpe_check_names_the_config_file_and_line(text, needles, tmp_path):
    """`gwnpe check CONFIG` (what `make demo` runs first) names the file and the line, without a traceback."""
    import subprocess
    import sys

    path = tmp_path / "my.yaml"
    if text is not None:
        path.write_text(text)
    res = subprocess.run([sys.executable, "-m", "gwnpe.cli", "check", str(path)], capture_output=True, text=True)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    for needle in needles:
        assert needle in res.stderr, (needle, res.stderr)
    ok = subprocess.run([sys.executable, "-m", "gwnpe.cli", "check", str(REPO / "config/tiny.yaml")], capture_output=True,
                        text=True)
    assert ok.returncode == 0 and "valid" in ok.stdout, ok.stderr
    # and prints the memory and disk each stage will need (the tiny bank: 600 x 945 bins x 2 x 16 B)
    assert "estimated memory and disk" in ok.stdout and "limits: memory" in ok.stdout
    assert any(line.split()[:1] == ["bank"] and "18.1 MB" in line for line in ok.stdout.splitlines()), ok.stdout


# ----------------------------------------------------------------------------- injection files


_INJ_HEADER = "chirp_mass,mass_ratio,luminosity_distance,theta_jn,phase,geocent_time,ra,dec,psi"
_INJ_ROW = "30.0,0.5,500.0,1.0,1.0,0.0,1.0,0.1,0.5"

INJECTION_FILE_CASES = [
    pytest.param("inj.csv", f"{_INJ_HEADER}\n{_INJ_ROW}\n{_INJ_ROW.replace('30.0', '100.0', 1)}\n",
                 ["inj.csv", "row 2, column 'chirp_mass' = 100", "[20, 40]", "cannot infer", "widen the prior"],
                 id="injections-outside-the-prior"),
    pytest.param("inj.csv", f"{_INJ_HEADER}\n{_INJ_ROW.replace('500.0', '-500.0')}\n",
                 ["inj.csv", "row 1, column 'luminosity_distance' = -500", "[100, 2000]"],
                 id="injections-negative-distance"),
    pytest.param("inj.csv", f"{_INJ_HEADER}\n",
                 ["inj.csv", "has no injections (no rows)", "unset injections.file"],
                 id="injections-header-only"),
    pytest.param("inj.json", "{\"chirp_mass\": [30.0,",
                 ["inj.json", "cannot be read", "JSON object {name: [values, ...]}"],
                 id="injections-malformed-json"),
    pytest.param("inj.json", '{"chirp_mass": 30.0, "mass_ratio": [0.5]}',
                 ["inj.json", "'chirp_mass' is 30.0, not a list of values"],
                 id="injections-json-scalar"),
    pytest.param("inj.csv", f"{_INJ_HEADER}\n{_INJ_ROW.replace('0.5,500.0', 'half,500.0')}\n",
                 ["inj.csv", "column 'mass_ratio'", "row 1", "give a number in every cell"],
                 id="injections-non-numeric-cell"),
    pytest.param("folder", None, ["folder", "is a directory", "CSV file with a header row"],
                 id="injections-file-is-a-directory"),
]


@pytest.mark.parametrize("name, text, needles", INJECTION_FILE_CASES)
def test_injection_file(name, text, needles, tmp_path):
    """A bad injections.file stops the run at config load (when Snakemake counts the injections), naming the
    file, the row and the column."""
    from gwnpe.errors import InjectionError
    from gwnpe.stages.workflow import check_config, injection_count

    path = tmp_path / name
    if text is None:
        path.mkdir()
    else:
        path.write_text(text)
    raw = _raw_config()
    raw["injections"]["file"] = str(path)
    with pytest.raises(InjectionError) as info:
        injection_count(check_config(raw))
    assert_names(info, *needles)


# ----------------------------------------------------------------------------- waveform model


WAVEFORM_CASES = [
    pytest.param("minimum=20.0, maximum=40.0", "minimum=1500.0, maximum=2000.0", 20, 0.01,
                 ["more than the 0 allowed", "chirp_mass"], id="waveform-masses-beyond-imrphenomd"),
    pytest.param("minimum=0.25, maximum=1.0", "minimum=0.0005, maximum=0.0009", 20, 0.01,
                 ["more than the 0 allowed", "'mass_ratio': 0.000"], id="waveform-extreme-mass-ratio"),
    pytest.param("minimum=20.0, maximum=40.0", "minimum=20.0, maximum=2000.0", 40, 0.1,
                 ["more than the 4 allowed by waveform.max_failure_fraction", "raise waveform.max_failure_fraction"],
                 id="waveform-refusals-above-max-failure-fraction"),
]


@pytest.mark.parametrize("old, new, size, fraction, needles", WAVEFORM_CASES)
def test_waveform(old, new, size, fraction, needles, tiny_config, tmp_path):
    from gwnpe.stages.bank import run_bank_stage
    from gwnpe.stages.settings import stage_settings

    prior = _write_prior(tmp_path, _replace(old, new)(DEFAULT_PRIOR), "edge.prior")
    cfg = copy.deepcopy(tiny_config)
    cfg["priors"] = str(prior)
    cfg["bank"]["size"] = size
    cfg["waveform"]["max_failure_fraction"] = fraction
    out = tmp_path / "out"
    with pytest.raises(WaveformError) as info:
        run_bank_stage(stage_settings(cfg, "bank"), out_path=out / "bank.h5", progress=False)
    # approximant, LAL's own reason, the prior file, and the fix
    assert_names(info, "IMRPhenomD", "[LAL: XLAL Error", "fCut", str(prior), "Narrow the prior", *needles)
    assert_nothing_written(out)


# ----------------------------------------------------------------------------- strain files (PSD stage)


def _strain_cfg(tiny_config):
    cfg = copy.deepcopy(tiny_config)
    cfg["psd"].update(source="files", duration=32.0)
    return cfg


def _window(cfg):
    from gwnpe.gw.strain_io import psd_window

    return psd_window(cfg)


def _good_file(folder, cfg, fs=512.0, pad=8.0, data=None, name=None):
    start, end = _window(cfg)
    t0 = np.floor(start) - pad
    n = int((end - t0 + pad) * fs)
    data = np.random.default_rng(1).normal(size=n) * 1e-21 if data is None else data(n, t0, fs)
    return _write_gwosc(folder / (name or f"L-L1_{fs:g}Hz.hdf5"), t0, fs, data)


def _strain_missing(folder, cfg):
    return folder / "H-H1_missing.hdf5", {}, ["does not exist", "check psd.strain_files.H1"]


def _strain_garbage(folder, cfg):
    path = folder / "H-H1_garbage.hdf5"
    path.write_bytes(np.random.default_rng(2).bytes(8192))
    return path, {}, ["not a readable HDF5 file", "damaged or truncated", "download it again",
                      "point psd.strain_files.H1 to a GWOSC HDF5 file"]


def _strain_text_named_hdf5(folder, cfg):
    start, _ = _window(cfg)
    path = folder / "H-H1_text.hdf5"
    t = np.floor(start) - 8 + np.arange(40 * 512) / 512
    np.savetxt(path, np.column_stack([t, np.random.default_rng(3).normal(size=len(t))]), fmt="%.17g")
    return path, {}, ["not a readable HDF5 file", "looks like a text file", "give it a .txt suffix"]


def _strain_slow(folder, cfg):
    path = _good_file(folder, cfg, fs=256.0, name="H-H1_256Hz.hdf5")
    return path, {}, ["sampled at 256 Hz", "below domain.sampling_frequency = 512 Hz",
                      "Lower domain.sampling_frequency (and f_max) or use data sampled faster"]


def _strain_odd_rate(folder, cfg):
    path = _good_file(folder, cfg, fs=1000.3, name="H-H1_odd_rate.hdf5")
    return path, {}, ["sampled at 1000.3 Hz", "psd.segment_length = 4 s", "not a whole number of samples",
                      "Resample the data"]


def _strain_gap(folder, cfg):
    start, end = _window(cfg)
    fs = 512.0
    t = np.floor(start) - 4 + np.arange(int((end - start + 8) * fs)) / fs
    keep = (t < start + 10) | (t >= start + 11)  # one second missing inside the window
    path = folder / "H-H1_gap.txt"
    np.savetxt(path, np.column_stack([t[keep], np.random.default_rng(4).normal(size=keep.sum())]), fmt="%.17g")
    return path, {}, ["not uniformly sampled", "gap or jump of 1.00195 s", "choose a window without gaps"]


def _strain_nan(folder, cfg):
    def data(n, t0, fs):
        x = np.random.default_rng(5).normal(size=n) * 1e-21
        i = int((_window(cfg)[0] + 5.0 - t0) * fs)
        x[i : i + 16] = np.nan  # a flagged stretch inside the PSD window
        return x

    path = _good_file(folder, cfg, data=data, name="H-H1_nan.hdf5")
    return path, {}, ["16 NaN/inf samples in the PSD window", "Choose a window with valid data"]


def _strain_too_short_for_psd_duration(folder, cfg):
    start, end = _window(cfg)
    path = _write_gwosc(folder / "H-H1_short.hdf5", start + 20.0, 512.0, np.zeros(int(40 * 512)))
    return path, {}, [f"needs [{start:.6f}, {end:.6f}) s", "Provide a file covering that window",
                      "shorten psd.duration"]


def _strain_shorter_than_welch_segment(folder, cfg):
    path = _good_file(folder, cfg, name="H-H1_32s.hdf5")
    return path, {"segment_length": 64.0}, ["32 s in the PSD window", "shorter than one Welch segment",
                                             "psd.segment_length = 64 s", "Raise psd.duration"]


STRAIN_CASES = [
    pytest.param(_strain_missing, id="strain-missing-file"),
    pytest.param(_strain_garbage, id="strain-garbage-bytes-hdf5"),
    pytest.param(_strain_text_named_hdf5, id="strain-text-file-named-hdf5"),
    pytest.param(_strain_slow, id="strain-sampled-below-domain"),
    pytest.param(_strain_odd_rate, id="strain-rate-not-whole-samples-per-segment"),
    pytest.param(_strain_gap, id="strain-gap"),
    pytest.param(_strain_nan, id="strain-nan-in-window"),
    pytest.param(_strain_too_short_for_psd_duration, id="strain-too-short-for-psd-duration"),
    pytest.param(_strain_shorter_than_welch_segment, id="strain-shorter-than-welch-segment"),
]


@pytest.mark.parametrize("make", STRAIN_CASES)
def test_strain(make, tiny_config, tmp_path):
    """Bad H1 strain (L1 is fine) through the PSD stage: the message names H1 and the file; no output."""
    from gwnpe.stages.psd import run_psd_stage

    cfg = _strain_cfg(tiny_config)
    data = tmp_path / "data"
    data.mkdir()
    bad, psd_settings, needles = make(data, cfg)
    cfg["psd"].update(strain_files={"H1": str(bad), "L1": str(_good_file(data, cfg))}, **psd_settings)
    out = tmp_path / "out"
    with pytest.raises(StrainError) as info:
        run_psd_stage("H1", cfg, out_psd=out / "H1_psd.txt", out_plot=out / "H1_psd.png")
    assert_names(info, "H1 strain", str(bad), *needles)
    assert_nothing_written(out)


# ----------------------------------------------------------------------------- models / inference


@pytest.fixture(scope="module")
def model_path(tiny_model):
    """The session's trained tiny model."""
    return tiny_model[0] / "model.pt"


@pytest.fixture(scope="module")
def model(model_path):
    from gwnpe.products.model import load_model

    return load_model(model_path)


def _event(model, seed=0):
    return noise_event(model, seed)


def _injections(tiny_products, folder, name, prior_text=None, detectors=None):
    """A two-injection campaign of the tiny config, optionally with another prior or detectors."""
    from gwnpe.stages.injections import run_injections_stage
    from gwnpe.stages.settings import stage_settings

    cfg = copy.deepcopy(tiny_products["config"])
    cfg["injections"]["count"] = 2
    psds = dict(tiny_products["psds"])
    if prior_text is not None:
        cfg["priors"] = str(_write_prior(folder, prior_text, f"{name}.prior"))
    if detectors is not None:
        cfg["detectors"] = detectors
        psds = {ifo: tiny_products["psds"]["H1"] for ifo in detectors}
    out = folder / f"{name}.h5"
    run_injections_stage(stage_settings(cfg, "injections"), psd_paths=psds, out_path=out)
    return out


def test_inference_extra_detector(model):
    from gwnpe.errors import InferenceError
    from gwnpe.inference.sampling import sample_posterior

    strain, psds = _event(model)
    strain["V1"], psds["V1"] = strain["H1"], psds["H1"]
    with pytest.raises(InferenceError) as info:
        sample_posterior(model, strain, psds, 10)
    assert_names(info, "trained for detectors ['H1', 'L1']", "given for ['H1', 'L1', 'V1']",
                 "give exactly the model's detectors")


def test_inference_wrong_frequency_grid(model):
    """Strain of an 8 s segment (twice the bins) for a model of 4 s segments."""
    from gwnpe.gw.domain import FrequencyDomain
    from gwnpe.inference.sampling import whitened_strain

    strain, psds = _event(model)
    n8 = len(FrequencyDomain(20.0, 256.0, 8.0, 512.0))
    strain = {ifo: np.resize(s, n8) for ifo, s in strain.items()}
    with pytest.raises(GwnpeError) as info:
        whitened_strain(model, strain, psds, None)
    assert_names(info, "strain of H1", f"shape ({n8},)", "frequency grid has 945 bins", "20.0-256.0 Hz",
                 "1/4.0 Hz", "another grid")


def test_inference_whitened_strain_of_wrong_shape(model):
    """Whitened strain for three detectors straight into the sampler: caught by the network, not by einsum."""
    from gwnpe.inference.sampling import sample_whitened

    d = np.zeros((1, 3, model.settings["n_bins"]), complex)
    with pytest.raises(ModelError) as info:
        sample_whitened(model, d, 10)
    assert_names(info, "shape (1, 3, 945)", "2 detectors", "945 frequency bins",
                 "Make them with the model's detectors and domain")


def test_inference_nan_frequency_domain_strain(model):
    from gwnpe.errors import InferenceError
    from gwnpe.inference.sampling import sample_posterior

    strain, psds = _event(model)
    strain["L1"] = strain["L1"].copy()
    strain["L1"][100:104] = np.nan
    with pytest.raises(InferenceError) as info:
        sample_posterior(model, strain, psds, 10)
    assert_names(info, "strain of L1", "4 non-finite", "choose a segment without")


def _segment_file(model, folder, name, fs=None, nan_at=None, cover=(-8.0, 8.0)):
    """A GWOSC file around the model's analysed segment (times relative to the trigger)."""
    fs = fs or model.settings["domain"]["sampling_frequency"]
    t0 = model.settings["trigger_time"] + cover[0]
    x = np.random.default_rng(6).normal(size=int((cover[1] - cover[0]) * fs)) * 1e-22
    if nan_at is not None:
        i = int((nan_at - cover[0]) * fs)
        x[i : i + 3] = np.nan
    return _write_gwosc(folder / name, t0, fs, x)


def test_inference_nan_time_domain_strain(model, tmp_path):
    from gwnpe.inference.sampling import strain_from_time_domain

    good = _segment_file(model, tmp_path, "H1.hdf5")
    bad = _segment_file(model, tmp_path, "L1.hdf5", nan_at=0.5)  # NaNs 0.5 s after the trigger
    with pytest.raises(StrainError) as info:
        strain_from_time_domain(model, {"H1": good, "L1": bad})
    assert_names(info, "L1 strain file", str(bad), "3 NaN/inf samples", "Use a file with valid data there")
    assert "psd." not in _message(info)  # not the PSD stage's advice


def test_inference_time_domain_file_not_covering_segment(model, tmp_path):
    from gwnpe.inference.sampling import strain_from_time_domain

    good = _segment_file(model, tmp_path, "H1.hdf5")
    short = _segment_file(model, tmp_path, "L1.hdf5", cover=(-1.0, 1.0))  # the segment is [-2, 2) s
    start = model.settings["trigger_time"] - 2.0
    with pytest.raises(StrainError) as info:
        strain_from_time_domain(model, {"H1": good, "L1": short})
    assert_names(info, "L1 strain file", str(short), f"needs [{start:.6f}, {start + 4:.6f}) s",
                 "Provide a file covering that window")
    assert "psd.duration" not in _message(info)


def test_inference_time_domain_file_at_another_rate(model, tmp_path):
    from gwnpe.errors import InferenceError
    from gwnpe.inference.sampling import strain_from_time_domain

    good = _segment_file(model, tmp_path, "H1.hdf5")
    fast = _segment_file(model, tmp_path, "L1.hdf5", fs=1024.0)
    with pytest.raises(InferenceError) as info:
        strain_from_time_domain(model, {"H1": good, "L1": fast})
    assert_names(info, str(fast), "L1", "sampled at 1024 Hz", "the model at 512 Hz", "resample the data first")


def test_inference_injections_made_with_another_prior(model_path, tiny_products, tmp_path):
    """Injections parameterised by component masses, the model by chirp mass and mass ratio."""
    from gwnpe.errors import InjectionError
    from gwnpe.stages.posteriors import run_posteriors_stage

    text = DEFAULT_PRIOR.replace(
        "chirp_mass = bilby.gw.prior.UniformInComponentsChirpMass(name='chirp_mass', minimum=20.0, maximum=40.0, unit='$M_{\\odot}$')",
        "mass_1 = Uniform(name='mass_1', minimum=30, maximum=50)",
    ).replace(
        "mass_ratio = bilby.gw.prior.UniformInComponentsMassRatio(name='mass_ratio', minimum=0.25, maximum=1.0)",
        "mass_2 = Uniform(name='mass_2', minimum=20, maximum=30)",
    )
    assert "mass_1 = " in text and "mass_2 = " in text
    inj = _injections(tiny_products, tmp_path, "components", prior_text=text)
    out = tmp_path / "posteriors"
    with pytest.raises(InjectionError) as info:
        run_posteriors_stage(POSTERIOR_SETTINGS, model_path=model_path, injections_path=inj, out_paths=[out / "injection_0.hdf5", out / "injection_1.hdf5"])
    assert_names(info, str(inj), "lack the model's parameters", "'chirp_mass'", "'mass_ratio'",
                 "made with another prior", "rerun the injections stage")
    assert_nothing_written(out)


def test_inference_injections_for_other_detectors(model_path, tiny_products, tmp_path):
    from gwnpe.stages.posteriors import run_posteriors_stage

    inj = _injections(tiny_products, tmp_path, "h1v1", detectors=["H1", "V1"])
    out = tmp_path / "posteriors"
    with pytest.raises(GwnpeError) as info:
        run_posteriors_stage(POSTERIOR_SETTINGS, model_path=model_path, injections_path=inj, out_paths=[out / "injection_0.hdf5", out / "injection_1.hdf5"])
    assert_names(info, "trained for detectors ['H1', 'L1']", "given for ['H1', 'V1']",
                 "give exactly the model's detectors")
    assert_nothing_written(out)


# ----------------------------------------------------------------------------- resources


def test_resources_cuda_requested_without_gpu(monkeypatch, tiny_products, tmp_path):
    """``training.device: cuda`` without a visible GPU stops the train stage before it writes anything;
    ``auto`` falls back to the CPU."""
    from gwnpe.nn.training import select_device
    
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device("auto") == torch.device("cpu")
    assert select_device("cpu") == torch.device("cpu")
    cfg = copy.deepcopy(tiny_products["config"])
    cfg["training"].update(device="cuda", epochs=1)
    out = tmp_path / "model"
    p = tiny_products
    with pytest.raises(GwnpeError) as info:
        train_model(cfg, out, training_set=p["training_set"], basis=p["basis"], psds=p["psds"], threads=1)
    assert_names(info, "training.device is 'cuda'", "no CUDA GPU is visible", "use 'auto' or 'cpu'",
                 "run on a GPU node")
    assert_nothing_written(out)


# ----------------------------------------------------------------------------- corrupt stage outputs


def _corrupt_bank_truncated_to_svd(p, inp, out):
    from gwnpe.stages.settings import stage_settings
    from gwnpe.stages.svd import run_svd_stage

    bank = _truncate(p["bank"], inp / "bank.h5")
    run_svd_stage(stage_settings(p["config"], "svd"), bank_path=bank, psd_paths=p["psds"], out_path=out / "basis.h5", plot_path=out / "mismatch.png")


def _corrupt_bank_missing_dataset_to_svd(p, inp, out):
    import shutil

    from gwnpe.stages.settings import stage_settings

    from gwnpe.stages.svd import run_svd_stage

    bank = inp / "bank.h5"
    shutil.copy(p["bank"], bank)
    with h5py.File(bank, "a") as f:
        del f["h_cross"]
    run_svd_stage(stage_settings(p["config"], "svd"), bank_path=bank, psd_paths=p["psds"], out_path=out / "basis.h5", plot_path=out / "mismatch.png")


def _corrupt_psd_truncated_to_svd(p, inp, out):
    from gwnpe.stages.settings import stage_settings
    from gwnpe.stages.svd import run_svd_stage

    psds = {**p["psds"], "L1": _truncate(p["psds"]["L1"], inp / "L1_psd.txt", 0.3)}
    run_svd_stage(stage_settings(p["config"], "svd"), bank_path=p["bank"], psd_paths=psds, out_path=out / "basis.h5", plot_path=out / "mismatch.png")


def _corrupt_basis_truncated_to_training_set(p, inp, out):
    from gwnpe.stages.training_set import run_training_set_stage

    basis = _truncate(p["basis"], inp / "basis.h5")
    run_training_set_stage(p["config"], prior_path=p["config"]["priors"], basis_path=basis, out_path=out / "training_set.h5", threads=1,
                           progress=False)


def _corrupt_basis_of_other_domain_to_training_set(p, inp, out):
    import shutil

    from gwnpe.stages.training_set import run_training_set_stage

    basis = inp / "basis.h5"
    shutil.copy(p["basis"], basis)
    cfg = copy.deepcopy(p["config"])
    cfg["domain"]["f_max"] = 200.0  # the basis was made for 20-256 Hz
    run_training_set_stage(cfg, prior_path=cfg["priors"], basis_path=basis, out_path=out / "training_set.h5", threads=1, progress=False)


def _corrupt_basis_truncated_to_train(p, inp, out):
    
    basis = _truncate(p["basis"], inp / "basis.h5")
    train_model(p["config"], out, training_set=p["training_set"], basis=basis, psds=p["psds"], threads=1)


def _corrupt_training_set_truncated_to_train(p, inp, out):
    
    ts = _truncate(p["training_set"], inp / "training_set.h5")
    train_model(p["config"], out, training_set=ts, basis=p["basis"], psds=p["psds"], threads=1)


CORRUPT_CASES = [
    pytest.param(_corrupt_bank_truncated_to_svd, "bank.h5", ["unreadable or incomplete", "rerun the bank stage"],
                 id="corrupt-bank-truncated-to-svd"),
    pytest.param(_corrupt_bank_missing_dataset_to_svd, "bank.h5", ["h_cross", "rerun the bank stage"],
                 id="corrupt-bank-missing-dataset-to-svd"),
    pytest.param(_corrupt_psd_truncated_to_svd, "L1_psd.txt", ["rerun the psd stage"],
                 id="corrupt-psd-truncated-to-svd"),
    pytest.param(_corrupt_basis_truncated_to_training_set, "basis.h5", ["unreadable or incomplete", "rerun the svd stage"],
                 id="corrupt-basis-truncated-to-training-set"),
    pytest.param(_corrupt_basis_of_other_domain_to_training_set, "basis.h5",
                 ["945 bins", "20-256 Hz", "rerun the svd stage with this config's domain"],
                 id="corrupt-basis-of-other-domain-to-training-set"),
    pytest.param(_corrupt_basis_truncated_to_train, "basis.h5", ["unreadable or incomplete", "rerun the svd stage"],
                 id="corrupt-basis-truncated-to-train"),
    pytest.param(_corrupt_training_set_truncated_to_train, "training_set.h5", ["rerun the training_set stage"],
                 id="corrupt-training-set-truncated-to-train"),
]


@pytest.mark.parametrize("run, culprit, needles", CORRUPT_CASES)
def test_corrupt(run, culprit, needles, tiny_products, tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    with pytest.raises(GwnpeError) as info:
        run(tiny_products, inp, out)
    assert_names(info, str(inp / culprit), *needles)
    assert_nothing_written(out)


def test_corrupt_model_truncated_to_posteriors(model_path, tiny_products, tmp_path):
    from gwnpe.stages.posteriors import run_posteriors_stage

    inj = _injections(tiny_products, tmp_path, "injections")
    model = _truncate(model_path, tmp_path / "model.pt")
    out = tmp_path / "posteriors"
    with pytest.raises(ModelError) as info:
        run_posteriors_stage(POSTERIOR_SETTINGS, model_path=model, injections_path=inj, out_paths=[out / "injection_0.hdf5", out / "injection_1.hdf5"])
    assert_names(info, str(model), "unreadable or truncated", "rerun the train stage")
    assert_nothing_written(out)


def test_corrupt_injections_truncated_to_posteriors(model_path, tiny_products, tmp_path):
    from gwnpe.errors import InjectionError
    from gwnpe.stages.posteriors import run_posteriors_stage

    inj = _truncate(_injections(tiny_products, tmp_path, "full"), tmp_path / "injections.h5")
    out = tmp_path / "posteriors"
    with pytest.raises(InjectionError) as info:
        run_posteriors_stage(POSTERIOR_SETTINGS, model_path=model_path, injections_path=inj, out_paths=[out / "injection_0.hdf5", out / "injection_1.hdf5"])
    assert_names(info, str(inj), "unreadable or incomplete", "rerun the injections stage")
    assert_nothing_written(out)


def test_corrupt_file_that_is_not_a_model(tmp_path):
    from gwnpe.products.model import load_model

    path = tmp_path / "model.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(ModelError) as info:
        load_model(path)
    assert_names(info, str(path), "not a gwnpe model file", "written by the train stage")
