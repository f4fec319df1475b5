"""Load and validate gwnpe configurations against ``config/schema.yaml``.

Validation happens once, at load time, before any job starts. A wrong key, type
or range raises :class:`~gwnpe.errors.ConfigError` with one message naming the
key path, the bad value and what is allowed. Defaults from the schema are filled
in, so downstream code can rely on every key being present.
"""

from __future__ import annotations

import copy
import difflib
import logging
import math
from pathlib import Path

import jsonschema
import yaml

from .errors import ConfigError

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = REPO_ROOT / "config" / "schema.yaml"



def load_schema(path: str | Path = SCHEMA_PATH) -> dict:
    """Return the configuration JSON schema (YAML) as a dict."""
    with open(path) as f:
        return yaml.safe_load(f)


def _key_path(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _subschema(schema: dict, path) -> dict:
    node = schema
    for part in path:
        if node.get("type") == "object" or "properties" in node:
            node = node.get("properties", {}).get(part, node.get("additionalProperties", {}))
        elif "items" in node:
            node = node["items"]
        if not isinstance(node, dict):
            return {}
    return node


def _describe_allowed(sub: dict) -> str:
    if "enum" in sub:
        return "one of " + ", ".join(repr(v) for v in sub["enum"])
    parts = []
    if "type" in sub:
        t = sub["type"]
        parts.append("type " + (" or ".join(t) if isinstance(t, list) else t))
    for key, word in [
        ("minimum", ">="),
        ("exclusiveMinimum", ">"),
        ("maximum", "<="),
        ("exclusiveMaximum", "<"),
    ]:
        if key in sub:
            parts.append(f"{word} {sub[key]}")
    if "pattern" in sub:
        parts.append(f"matching {sub['pattern']}")
    return ", ".join(parts) or "see config/schema.yaml"


def _format_error(err: jsonschema.ValidationError, schema: dict) -> str:
    path = list(err.absolute_path)
    if err.validator == "additionalProperties":
        allowed = sorted(_subschema(schema, path).get("properties", {}))
        unknown = sorted(set(err.instance) - set(allowed))
        msgs = []
        for key in unknown:
            guess = difflib.get_close_matches(key, allowed, n=1)
            elsewhere = [p for p in _key_paths(schema) if p.rsplit(".", 1)[-1] == key]
            if guess:
                fix = f"; did you mean '{_key_path(path + [guess[0]])}'? Remove or rename it"
            elif elsewhere:
                fix = f"; did you mean '{elsewhere[0]}' (it belongs in another section)? Move it there"
            else:
                fix = ": remove or rename it"
            msgs.append(
                f"unknown config key '{_key_path(path + [key])}'{fix}; "
                f"allowed keys here: {', '.join(allowed)} (all documented in config/schema.yaml)."
            )
        return " ".join(msgs)
    sub = _subschema(schema, path)
    key = _key_path(path)
    hint = _type_hint(err, sub, key)
    fix = f"set '{key}' to such a value"
    if "default" in sub:
        fix += f" (or remove it to get the default, {sub['default']!r})"
    return (
        f"invalid config value at '{key}': {err.instance!r} ({err.message}). {hint}"
        f"Allowed: {_describe_allowed(sub)}; {fix}. Description: {sub.get('description', 'n/a')}"
    )


def _type_hint(err, sub: dict, key: str) -> str:
    """Why a value that looks right has the wrong type: YAML 1.1 numbers read as strings, nested
    ``--config`` values passed as strings."""
    if err.validator != "type" or not isinstance(err.instance, str):
        return ""
    wanted = sub.get("type")
    wanted = wanted if isinstance(wanted, list) else [wanted]
    text = err.instance.strip()
    if "number" in wanted or "integer" in wanted:
        try:
            value = float(text)
        except ValueError:
            return ""
        fixed = f"{value:.1e}".replace("e-0", "e-").replace("e+0", "e+")
        return f"YAML (PyYAML, YAML 1.1) reads {text} as a string: write the number with a decimal point, {fixed}. "
    if "object" in wanted and text.startswith("{"):
        return (f"Snakemake's --config passes nested values as strings ({key}={text}); put nested settings in a "
                "YAML file and pass it with --configfile (it extends config/config.yaml), e.g. a file holding "
                f"'{key}:' and the keys below it. ")
    return ""


def _key_paths(schema: dict, prefix: str = ""):
    """Dotted paths of every key the schema defines (for 'did you mean' hints)."""
    for key, sub in schema.get("properties", {}).items():
        yield prefix + key
        if isinstance(sub, dict):
            yield from _key_paths(sub, prefix + key + ".")


def _fill_defaults(instance: dict, schema: dict) -> None:
    for key, sub in schema.get("properties", {}).items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if isinstance(instance.get(key), dict) and sub.get("type") == "object":
            _fill_defaults(instance[key], sub)


def validate_config(config: dict, schema: dict | None = None) -> dict:
    """Validate ``config`` against the schema in place (filling defaults) and return it.

    Only what the schema and the cross-key rules of :func:`check_consistency` can tell; the checks
    that need the prior file and the waveform model are
    :func:`gwnpe.stages.settings.check_config`'s.

    Parameters
    ----------
    config : dict
        Raw configuration (e.g. Snakemake's ``config``).
    schema : dict, optional
        The schema; read from ``config/schema.yaml`` when omitted.

    Raises
    ------
    ConfigError
        Naming the key path, the bad value and what is allowed.
    """
    schema = schema or load_schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), str(e.absolute_path)))
    if errors:
        raise ConfigError(_format_error(errors[0], schema))
    _fill_defaults(config, schema)
    check_consistency(config)
    return config


def config_subset(config: dict, *keys: str) -> dict:
    """The parts of a validated config that one stage depends on, nested as in the config.

    ``keys`` are top-level keys or dotted paths (``"injections.n_samples"``).
    """
    out: dict = {}
    for key in keys:
        *parents, leaf = key.split(".")
        node, dst = config, out
        for part in parents:
            node = node[part]
            dst = dst.setdefault(part, {})
        dst[leaf] = node[leaf]
    return out


def check_consistency(config: dict) -> None:
    """Cross-key checks that a JSON schema cannot express."""
    dom = config["domain"]
    nyquist = dom["sampling_frequency"] / 2
    if dom["f_max"] > nyquist:
        raise ConfigError(
            f"domain.f_max = {dom['f_max']} Hz is above the Nyquist frequency "
            f"{nyquist} Hz of domain.sampling_frequency = {dom['sampling_frequency']} Hz. "
            f"Lower domain.f_max or raise domain.sampling_frequency to at least {2 * dom['f_max']}."
        )
    if 2 * dom["roll_off"] > dom["duration"]:
        raise ConfigError(
            f"domain.roll_off = {dom['roll_off']} s at each end is longer than half of domain.duration = "
            f"{dom['duration']} s: the window would have no flat part. Lower domain.roll_off (bilby's default is 0.2 s)."
        )
    if dom["f_min"] >= dom["f_max"]:
        raise ConfigError(
            f"domain.f_min = {dom['f_min']} Hz must be below domain.f_max = {dom['f_max']} Hz: the band "
            f"would be empty. Lower domain.f_min or raise domain.f_max (at most the Nyquist frequency {nyquist} Hz)."
        )
    if dom["post_trigger_duration"] >= dom["duration"]:
        raise ConfigError(
            f"domain.post_trigger_duration = {dom['post_trigger_duration']} s must be shorter than "
            f"domain.duration = {dom['duration']} s: no data would precede the trigger, where the signal is. "
            "Lower domain.post_trigger_duration (2 s is usual) or raise domain.duration."
        )
    n = dom["duration"] * dom["sampling_frequency"]
    if abs(n - round(n)) > 1e-6:
        raise ConfigError(
            f"domain.duration x domain.sampling_frequency = {dom['duration']} x {dom['sampling_frequency']} = {n} "
            "is not a whole number of samples. Choose values whose product is an integer (e.g. a power-of-two "
            "duration in s and sampling_frequency in Hz)."
        )
    psd = config["psd"]
    seg = psd["segment_length"] or dom["duration"]
    if seg > psd["duration"]:
        raise ConfigError(
            f"psd.segment_length = {seg} s is longer than psd.duration = {psd['duration']} s: "
            "Welch's method needs several segments. Raise psd.duration or shorten psd.segment_length."
        )
    if psd["source"] == "files":
        missing = [ifo for ifo in config["detectors"] if ifo not in psd["strain_files"]]
        if missing:
            raise ConfigError(
                f"psd.source is 'files' but psd.strain_files has no file for {', '.join(missing)}. "
                "Add 'IFO: path' entries for every detector in 'detectors'."
            )
    extra = set(psd["strain_files"]) - set(config["detectors"])
    if extra:
        raise ConfigError(
            f"psd.strain_files names {', '.join(sorted(extra))}, which is not in detectors "
            f"{config['detectors']}. Remove that entry from psd.strain_files, or add the detector to detectors."
        )
    if psd["strain_files"] and psd["source"] != "files":
        raise ConfigError(
            f"psd.strain_files is set ({', '.join(sorted(psd['strain_files']))}) but psd.source is '{psd['source']}', so "
            "the files would be ignored. Set psd.source: files to estimate the PSDs from them, or remove psd.strain_files."
        )
    if isinstance(psd["noise_curve"], dict):
        missing = [ifo for ifo in config["detectors"] if ifo not in psd["noise_curve"]]
        if missing:
            raise ConfigError(
                f"psd.noise_curve is a mapping but has no curve for {', '.join(missing)}. Add an "
                f"'{missing[0]}: <curve>' entry, or give one curve name for all detectors."
            )
    bank, svd = config["bank"], config["svd"]
    if bank["size"] < svd["size"] + svd["validation_size"]:
        raise ConfigError(
            f"bank.size = {bank['size']} is smaller than svd.size + svd.validation_size = "
            f"{svd['size']} + {svd['validation_size']}: the basis needs at least as many training "
            "waveforms as elements, plus held-out ones. Raise bank.size or lower svd.size."
        )
    n_bins = math.floor(dom["f_max"] * dom["duration"] + 1e-9) - math.ceil(dom["f_min"] * dom["duration"] - 1e-9) + 1
    if svd["size"] > n_bins:
        raise ConfigError(
            f"svd.size = {svd['size']} exceeds the {n_bins} frequency bins of the band ({dom['f_min']}-{dom['f_max']} Hz "
            f"at 1/{dom['duration']} Hz): a basis cannot have more elements than bins. Lower svd.size to at most {n_bins}."
        )
    if psd["source"] == "files":
        for ifo, path in psd["strain_files"].items():
            if str(path).lower().endswith(".gwf") and not psd["channels"].get(ifo):
                raise ConfigError(
                    f"psd.strain_files.{ifo} = '{path}' is a GWF frame file, which needs a channel name: set "
                    f"psd.channels.{ifo} (e.g. '{ifo}:GDS-CALIB_STRAIN')."
                )
    if config["dask"]["cluster"] == "address" and not config["dask"]["address"]:
        raise ConfigError(
            "dask.cluster is 'address' but dask.address is not set: set it to the scheduler's address "
            "(e.g. tcp://host:8786), or use dask.cluster 'local'."
        )


def read_config(path: str | Path) -> dict:
    """Read a YAML config file and validate it against the schema (see :func:`validate_config`)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"config file '{path}' does not exist (relative to the working directory '{Path.cwd()}'); "
            "pass the path of a YAML config, e.g. config/config.yaml or a copy of it."
        )
    with open(path) as f:
        try:
            config = yaml.safe_load(f) or {}
        except yaml.YAMLError as exc:
            tabs = " YAML does not allow tabs for indentation: indent with spaces." if "'\\t'" in str(exc) else ""
            raise ConfigError(f"config file '{path}' is not valid YAML: {exc}. Fix the line named above.{tabs}") from exc
    return validate_config(config)
