"""Config schema and load-time validation: every bad input names its key, value and the fix."""

from __future__ import annotations

import copy

import pytest
import yaml

from gwnpe.config import load_schema, validate_config

from gwnpe.stages.workflow import check_config, load_config
from gwnpe.errors import ConfigError, PriorError

from tests.conftest import REPO


def _walk(schema, path=""):
    for key, sub in schema.get("properties", {}).items():
        yield f"{path}{key}", sub
        if sub.get("type") == "object":
            yield from _walk(sub, f"{path}{key}.")


def test_every_schema_key_has_description_and_default():
    schema = load_schema()
    keys = list(_walk(schema))
    assert len(keys) > 40
    for path, sub in keys:
        assert sub.get("description"), f"{path} has no description"
        assert "default" in sub, f"{path} has no default"
    # unknown keys are rejected at every level
    assert schema["additionalProperties"] is False
    for path, sub in keys:
        if sub.get("type") == "object" and "properties" in sub:
            assert sub.get("additionalProperties") is False, path


def test_schema_defaults_validate_on_their_own():
    """An empty config is the schema's defaults, and those are valid."""
    cfg = check_config({})
    assert cfg["psd"]["duration"] == 1024.0
    assert cfg["svd"]["tolerance"] == 1e-4


@pytest.mark.parametrize("name", ["config.yaml", "tiny.yaml"])
def test_shipped_configs_validate(name):
    cfg = load_config(REPO / "config" / name)
    assert cfg["run"]
    assert set(cfg["detectors"]) <= {"H1", "L1", "V1"}


@pytest.mark.parametrize("name", ["tiny.yaml", "production.yaml"])
def test_standalone_configs_mean_the_same_in_the_workflow_and_alone(name):
    """The Snakefile's `configfile: config/config.yaml` is the base every --configfile is merged into,
    while the library, the CLI and the tests load a config file alone. For the configs that are not
    overlays of config.yaml (their own problem, run name and sizes) the two readings must agree, or a
    key set in config.yaml (GNPE on, say) silently changes the tiny run in the DAG only."""
    from snakemake.utils import update_config

    merged = yaml.safe_load((REPO / "config/config.yaml").read_text())
    update_config(merged, _raw(name))
    assert validate_config(merged) == validate_config(_raw(name)), (
        f"config/{name}: keys of config/config.yaml leak into the workflow's reading of it; state them in config/{name}"
    )


def _raw(name="tiny.yaml"):
    return yaml.safe_load((REPO / "config" / name).read_text())


@pytest.mark.parametrize(
    "mutate, needles",
    [
        (lambda c: c.update(foo=1), ["unknown config key 'foo'"]),
        (lambda c: c["bank"].update(sise=3), ["'bank.sise'", "did you mean 'bank.size'"]),
        (lambda c: c["domain"].update(f_min="twenty"), ["domain.f_min", "'twenty'", "number"]),
        (lambda c: c["bank"].update(size=2.5), ["bank.size", "2.5", "integer"]),
        (lambda c: c.update(detectors=["H1", "X1"]), ["detectors.1", "'X1'", "one of 'A1'", "'H1'", "'V1'"]),
        (lambda c: c.update(detectors=["H1", "ET"]), ["detectors.1", "'ET'", "'ET1', 'ET2', 'ET3'"]),
        (lambda c: c.update(detectors=["H1", "G1"]), ["detectors.1", "'G1'", "'GEO600'"]),
        (lambda c: c["psd"].update(window="triangle"), ["psd.window", "'triangle'", "hann"]),
        (lambda c: c["svd"].update(tolerance=-1), ["svd.tolerance", "-1"]),
        (lambda c: c["domain"].update(f_max=400.0), ["domain.f_max = 400.0", "Nyquist", "256.0"]),
        (lambda c: c["domain"].update(f_min=300.0), ["domain.f_min = 300.0", "below domain.f_max"]),
        (lambda c: c["bank"].update(size=150), ["bank.size = 150", "svd.size", "svd.validation_size"]),
        (lambda c: c["psd"].update(source="files"), ["psd.strain_files", "H1, L1"]),
        (lambda c: c["psd"].update(duration=2.0), ["psd.segment_length", "psd.duration"]),
        (lambda c: c["dask"].update(cluster="address"), ["dask.address"]),
    ],
)
def test_bad_config_names_the_culprit(mutate, needles):
    raw = _raw()
    mutate(raw)
    with pytest.raises(ConfigError) as info:
        validate_config(raw)
    msg = str(info.value)
    for needle in needles:
        assert needle in msg, msg


def test_validation_fills_defaults_without_touching_given_values():
    raw = _raw()
    raw["svd"].pop("oversampling", None)
    cfg = validate_config(copy.deepcopy(raw))
    assert cfg["svd"]["oversampling"] == 20
    assert cfg["svd"]["size"] == raw["svd"]["size"]


def test_missing_and_malformed_config_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("run: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_prior_problems_surface_at_config_load(tmp_path):
    prior = tmp_path / "bad.prior"
    prior.write_text((REPO / "config/priors/default.prior").read_text() + "lambda_tilde = Uniform(minimum=0, maximum=1000)\n")
    raw = _raw()
    raw["priors"] = str(prior)
    with pytest.raises(PriorError, match="lambda_tilde"):
        check_config(raw)


def test_schema_detectors_are_the_ones_the_code_supports():
    """The schema's detector list is the interferometers DetectorNetwork accepts (bilby's definitions), so a
    detector that passes validation never fails inside a job."""
    from gwnpe.gw.detectors import known_interferometers

    assert load_schema()["properties"]["detectors"]["items"]["enum"] == list(known_interferometers())
