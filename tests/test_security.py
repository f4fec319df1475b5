"""Files from other people are data, never code: prior files, model files and checkpoints that carry
code are refused without running it, and a run name cannot write outside results/."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gwnpe.errors import ConfigError, ModelError, PriorError
from tests.conftest import REPO

DEFAULT_PRIOR = (REPO / "config/priors/default.prior").read_text()


def _evil_priors(marker: Path) -> list[str]:
    """Lines that would create ``marker`` if a prior reader evaluated them (each replaces the chirp-mass line)."""
    m = str(marker)
    return [
        f"chirp_mass = bilby.gw.prior.UniformInComponentsChirpMass(name='chirp_mass', minimum=20.0, "
        f"maximum=[40.0, __import__('pathlib').Path('{m}').touch()][0])",
        f"chirp_mass = __import__('os').system('touch {m}')",
        f"chirp_mass = os.system('touch {m}')",
        f"chirp_mass = bilby.core.prior.Uniform(minimum=20, maximum=40, name=open('{m}', 'w').name)",
        f"chirp_mass = bilby.gw.prior.os.system('touch {m}')",
        f"chirp_mass = Uniform.__init__.__globals__['os'].system('touch {m}')",
        f"chirp_mass = (lambda: open('{m}', 'w'))()",
        f"chirp_mass = bilby.core.prior.Uniform(minimum=20, maximum=40, **{{'name': open('{m}', 'w').name}})",
        f"chirp_mass = exec(\"open('{m}', 'w')\")",
    ]


@pytest.mark.parametrize("case", range(len(_evil_priors(Path("x")))))
def test_prior_file_code_is_refused_without_running_it(tmp_path, case):
    from gwnpe.gw.priors import load_priors

    marker = tmp_path / "pwned"
    line = _evil_priors(marker)[case]
    prior = tmp_path / "evil.prior"
    lines = DEFAULT_PRIOR.splitlines()
    n = next(i for i, text in enumerate(lines) if text.startswith("chirp_mass"))
    lines[n] = line
    prior.write_text("\n".join(lines) + "\n")
    with pytest.raises(PriorError) as info:
        load_priors(prior)
    msg = str(info.value)
    assert str(prior) in msg and f"line {n + 1}" in msg and "Prior files are data" in msg, msg
    assert not marker.exists()


def test_prior_reader_agrees_with_bilby_on_the_repo_and_bilby_prior_files():
    """Every prior file of the repo and every one bilby ships is read into exactly the priors bilby builds."""
    import bilby
    from bilby.gw.prior import BBHPriorDict

    from gwnpe.gw.priors import parse_prior_text

    files = sorted((REPO / "config/priors").glob("*.prior"))
    files += sorted((Path(bilby.__file__).parent / "gw" / "prior_files").glob("*.prior"))
    assert len(files) >= 10
    for path in files:
        ours = BBHPriorDict(dictionary=parse_prior_text(path.read_text(), str(path)))
        ref = BBHPriorDict(filename=str(path))
        assert set(ours) == set(ref), path
        for key in ref:
            assert repr(ours[key]) == repr(ref[key]), (path, key)


@pytest.mark.slow
def test_snakemake_dry_run_does_not_run_prior_file_code(tmp_path):
    """The issue's case: the prior is read when Snakemake builds the DAG; the dry run stops, naming the line."""
    from tests.workflow import copy_workflow, smk, write_config

    wd = copy_workflow(tmp_path / "wf")
    marker = wd / "pwned"
    prior = wd / "config/priors/evil.prior"
    prior.write_text(DEFAULT_PRIOR.replace(
        "maximum=40.0, unit", f"maximum=[40.0, __import__('pathlib').Path('{marker}').touch()][0], unit"))
    res = smk(wd, write_config(wd, priors="config/priors/evil.prior"), "-n", timeout=300)
    assert res.returncode != 0 and "evil.prior" in res.stdout + res.stderr and "line 3" in res.stdout + res.stderr
    assert not marker.exists()


class _Payload:
    """Unpickling this creates a file: what a malicious model or checkpoint file would do instead."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _evil_model(path: Path, marker: Path) -> Path:
    torch.save({"format": 2, "settings": {}, "state_dict": {}, "provenance": {"stage": "train"},
                "extra": {"asds": _Payload(marker)}}, path)
    return path


def test_model_file_with_code_is_refused_without_running_it(tmp_path):
    from gwnpe.products.common import read_provenance
    from gwnpe.products.model import load_model

    marker = tmp_path / "pwned"
    evil = _evil_model(tmp_path / "evil.pt", marker)
    with pytest.raises(ModelError) as info:
        load_model(evil)
    assert str(evil) in str(info.value) and "weights_only" in str(info.value)
    with pytest.raises(ModelError):
        read_provenance(evil)
    assert not marker.exists()


@pytest.mark.parametrize("command", ["ls", "sample"])
def test_cli_refuses_model_files_with_code(tmp_path, command):
    marker = tmp_path / "pwned"
    evil = _evil_model(tmp_path / "evil.pt", marker)
    args = [str(evil)] if command == "ls" else ["--model", str(evil), "--strain", "H1=x.hdf5", "-o", str(tmp_path / "o.hdf5")]
    res = subprocess.run([sys.executable, "-m", "gwnpe.cli", command, *args], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 2, res.stdout + res.stderr
    assert "holds Python objects other than tensors" in res.stderr and str(evil) in res.stderr
    assert not marker.exists()


def test_checkpoint_with_code_is_refused_without_running_it(tiny_products, tmp_path):
    from tests.conftest import train_model

    marker = tmp_path / "pwned"
    out = tmp_path / "model"
    out.mkdir()
    torch.save({"format": 1, "run_hash": "x", "epoch": 1, "model": _Payload(marker)}, out / "checkpoint.pt")
    cfg = {**tiny_products["config"], "training": {**tiny_products["config"]["training"], "epochs": 1}}
    with pytest.raises(ModelError) as info:
        train_model(cfg, out, training_set=tiny_products["training_set"], basis=tiny_products["basis"],
                    psds=tiny_products["psds"])
    assert str(out / "checkpoint.pt") in str(info.value) and "delete the checkpoint" in str(info.value)
    assert not marker.exists() and not (out / "model.pt").exists()


def test_saved_models_round_trip_through_the_safe_loader(tiny_model):
    """A model the train stage writes loads with weights_only=True, its ASDs back as numpy arrays."""
    from gwnpe.products.model import load_model

    out, _, cfg = tiny_model
    model = load_model(out / "model.pt")
    assert isinstance(model.extra["asds"], np.ndarray) and model.extra["asds"].shape[0] == len(cfg["detectors"])
    assert torch.load(out / "model.pt", weights_only=True)["format"] == 2


@pytest.mark.parametrize("run", ["..", "../elsewhere", "/tmp/x", ".hidden", "a/b", ""])
def test_run_name_must_be_a_plain_name(config, run):
    """``run: '..'`` would put outputs in the checkout (report tables beside the captions): refused."""
    from gwnpe.config import validate_config

    raw = {k: v for k, v in config.items()}
    raw["run"] = run
    with pytest.raises(ConfigError) as info:
        validate_config(raw)
    assert "'run'" in str(info.value) and "results/" in str(info.value), str(info.value)
