"""``gwnpe ls`` prints what made a file."""

from __future__ import annotations

import subprocess
import sys

import h5py

from gwnpe import provenance
from gwnpe.products.common import make_provenance


def _run(*args):
    return subprocess.run([sys.executable, "-m", "gwnpe.cli", *args], capture_output=True, text=True)


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
