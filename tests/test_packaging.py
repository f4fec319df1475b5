"""The pinned environment is coherent, and the conda environment agrees with it."""

from __future__ import annotations

import tomllib

import yaml
from packaging.requirements import Requirement

from tests.conftest import REPO


def _pyproject_pins():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return {Requirement(d).name.lower(): Requirement(d) for d in deps}


def test_conda_env_pins_equal_pyproject():
    env = yaml.safe_load((REPO / "envs/gwnpe.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    conda_pins = {Requirement(d).name.lower(): Requirement(d) for d in pip}
    py = _pyproject_pins()
    assert set(conda_pins) == set(py)
    for name, req in py.items():
        assert str(conda_pins[name].specifier) == str(req.specifier), name
        assert conda_pins[name].extras == req.extras, name
    assert "python=3.11" in env["dependencies"]


def test_every_dependency_is_pinned_exactly_and_coherently():
    py = _pyproject_pins()
    for name, req in py.items():
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{name} is not pinned exactly"
    assert str(py["torch"].specifier) == "==2.13.0"  # the CPU wheel; never pulls CUDA builds
    # pycbc 2.11 needs numpy<2.4 and scipy<1.17, or pip silently falls back to pycbc 2.10
    from packaging.version import Version

    assert Version(next(iter(py["numpy"].specifier)).version) < Version("2.4")
    assert Version(next(iter(py["scipy"].specifier)).version) < Version("1.17")
    assert next(iter(py["pycbc"].specifier)).version.startswith("2.11")
    assert next(iter(py["snakemake"].specifier)).version.startswith("9.")


def test_installed_versions_match_the_pins():
    import importlib.metadata

    for name, req in _pyproject_pins().items():
        installed = importlib.metadata.version(name)
        assert req.specifier.contains(installed, prereleases=True), f"{name} {installed} != {req.specifier}"
