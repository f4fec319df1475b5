"""``gwnpe ls`` prints what made a file."""

from __future__ import annotations

import os
import subprocess
import sys

import h5py
import pytest

from gwnpe import provenance
from gwnpe.products.common import make_provenance
from tests.conftest import REPO


def _run(*args):
    return subprocess.run([sys.executable, "-m", "gwnpe.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def test_ls_prints_settings_inputs_and_versions(tmp_path):
    inp = tmp_path / "in.txt"
    inp.write_text(provenance.text_header(provenance.make_provenance("psd", {"seed": 1})) + "\n1 2\n")
    out = tmp_path / "out.h5"
    with h5py.File(out, "w") as f:
        provenance.write_h5(f, make_provenance("bank", {"seed": 3, "bank": {"size": 9}}, inputs={"psd": inp},
                                               texts={"prior_file": "chirp_mass = 30\n"}))
    res = _run("ls", str(out))
    assert res.returncode == 0, res.stderr
    for needle in ("stage: bank", "size: 9", "seed: 3", "lalsimulation:", "bilby:", "torch:", "psd: "):
        assert needle in res.stdout, needle
    assert "chirp_mass = 30" in res.stdout and "sha256:" not in res.stdout  # stored texts are printed, not their hash
    res = _run("ls", "--json", "--inputs", str(out))
    assert '"stage": "psd"' in res.stdout
    res = _run("ls", "--inputs", str(out))
    assert "stage: psd" in res.stdout and "seed: 1" in res.stdout  # the input's own provenance, nested


def test_ls_errors(tmp_path):
    res = _run("ls", str(tmp_path / "missing.h5"))
    assert res.returncode == 2 and "does not exist" in res.stderr
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w"):
        pass
    res = _run("ls", str(plain))
    assert res.returncode == 1 and "no gwnpe provenance" in res.stderr


def test_atomic_output_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "x.h5"
    try:
        with provenance.atomic_output(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert not target.exists() and list(tmp_path.iterdir()) == []


def _result(path, samples: dict, weights=None, priors=None):
    """A bilby Result file holding ``samples`` (and a ``weights`` column)."""
    import bilby
    import pandas as pd

    from gwnpe.products.results import write_result

    post = pd.DataFrame(samples)
    if weights is not None:
        post["weights"] = weights
    result = bilby.core.result.Result(label="t", outdir=str(path.parent), search_parameter_keys=list(samples),
                                      priors=priors, posterior=post)
    write_result(result, path)
    return path


def test_jsd_table_of_two_posterior_files(tmp_path):
    """`gwnpe jsd A B`: the per-parameter table and CSV of the same function the compare stage uses; weights used."""
    import csv

    import bilby
    import numpy as np

    from gwnpe.diagnostics.comparison import posterior_jsd

    rng = np.random.default_rng(5)
    priors = bilby.core.prior.PriorDict({"x": bilby.core.prior.Uniform(-10, 10, name="x"),
                                         "phase": bilby.core.prior.Uniform(0, 2 * np.pi, name="phase", boundary="periodic")})
    wide = rng.normal(0, 2, 40000)
    a = _result(tmp_path / "a.hdf5", {"x": wide, "phase": np.mod(rng.normal(0, 0.3, 40000), 2 * np.pi)},
                weights=np.exp(-0.5 * wide**2) / np.exp(-0.5 * (wide / 2) ** 2), priors=priors)
    b = _result(tmp_path / "b.hdf5", {"x": rng.normal(0, 1, 5000), "phase": np.mod(rng.normal(0, 0.3, 5000), 2 * np.pi)},
                priors=priors)
    res = _run("jsd", str(a), str(b), "--bootstrap", "5", "--csv", str(tmp_path / "jsd.csv"))
    assert res.returncode == 0, res.stderr
    assert "x" in res.stdout and "phase" in res.stdout and "JSD [nat]" in res.stdout
    rows = {r["parameter"]: r for r in csv.DictReader(open(tmp_path / "jsd.csv"))}
    import bilby.core.result as br

    ref = posterior_jsd(br.read_in_result(str(a)), br.read_in_result(str(b)), n_bootstrap=5)
    for r in ref:
        assert float(rows[r["parameter"]]["jsd"]) == pytest.approx(r["jsd"])
    assert float(rows["x"]["jsd"]) < 2e-3  # the weights turn N(0, 2) into N(0, 1)
    assert float(rows["phase"]["jsd"]) < 2e-3  # wrapped: one mode across 0 = 2 pi
    res = _run("jsd", str(a), str(b), "--no-weights")
    assert res.returncode == 0 and float(res.stdout.split("\n")[2].split()[1]) > 0.05  # x without its weights
    res = _run("jsd", str(a), str(tmp_path / "missing.hdf5"))
    assert res.returncode == 2 and "missing.hdf5" in res.stderr
