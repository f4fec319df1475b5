"""The package's layers, read from its import graph: every module imports only from its own layer or
those below it (function-level imports included), and the physics, network, inference and
diagnostics code never touches a config file loader, the stages, dask or snakemake."""

from __future__ import annotations

import ast
import functools

import pytest

from gwnpe.provenance import _module_files, gwnpe_imports, module_closure

#: Layers from the bottom up; a module may import from its own layer and those below.
LAYERS = [
    ("foundations", ("gwnpe", "gwnpe.errors", "gwnpe.seeding", "gwnpe.provenance", "gwnpe.config")),
    ("gw", ("gwnpe.gw",)),
    ("nn", ("gwnpe.nn",)),
    ("inference / diagnostics", ("gwnpe.inference", "gwnpe.diagnostics")),
    ("products", ("gwnpe.products",)),
    ("stages", ("gwnpe.stages",)),
    ("cli", ("gwnpe.cli",)),
]
#: Third-party packages that only the orchestration layers may import.
ORCHESTRATION_ONLY = ("dask", "distributed", "dask_jobqueue", "snakemake")
LIBRARY = ("gwnpe.gw", "gwnpe.nn", "gwnpe.inference", "gwnpe.diagnostics")

FILES = _module_files()
GRAPH = {m: gwnpe_imports(m, FILES) for m in FILES}


def layer(module: str) -> int:
    """Index in :data:`LAYERS` of the layer a module belongs to (longest matching prefix)."""
    best, length = None, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > length:
                best, length = i, len(p)
    assert best is not None, f"{module} belongs to no layer: add it to LAYERS"
    return best


def third_party_imports(module: str) -> set[str]:
    """Top-level names of the non-gwnpe packages a module imports anywhere in its source."""
    found = set()
    for node in ast.walk(ast.parse(FILES[module].read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
    return found - {"gwnpe"}


@functools.cache
def depth(module: str) -> int:
    """Length of the longest chain of gwnpe imports starting at ``module`` (the module included)."""
    return 1 + max((depth(m) for m in GRAPH[module]), default=0)


def test_every_module_is_in_a_layer_and_the_graph_has_no_cycle():
    for m in FILES:
        layer(m)
    # the longest chain: a stage -> inference.refinement -> importance_sampling -> sampling -> gnpe -> nn -> gw
    assert max(depth(m) for m in FILES) <= 7, {m: depth(m) for m in FILES}


@pytest.mark.parametrize("module", sorted(FILES))
def test_no_module_imports_a_layer_above_it(module):
    own = layer(module)
    above = sorted(m for m in GRAPH[module] if layer(m) > own)
    assert not above, f"{module} ({LAYERS[own][0]}) imports {above} from a layer above"


def test_inference_and_diagnostics_do_not_import_each_other():
    for m in FILES:
        for side, other in (("gwnpe.inference", "gwnpe.diagnostics"), ("gwnpe.diagnostics", "gwnpe.inference")):
            if m.startswith(side):
                assert not [x for x in GRAPH[m] if x.startswith(other)], (m, GRAPH[m])


@pytest.mark.parametrize("module", sorted(m for m in FILES if m.startswith(LIBRARY)))
def test_library_code_reads_no_config_and_runs_no_workflow(module):
    """Physics, networks, inference and diagnostics take objects and arrays: no config loader, no stage,
    no file of a stage (products), no dask or snakemake, directly or through what they import."""
    closure = module_closure(module)
    assert not [m for m in closure if m.startswith(("gwnpe.stages", "gwnpe.products", "gwnpe.cli"))], closure
    assert "gwnpe.config" not in closure, closure
    for m in closure:
        assert not third_party_imports(m) & set(ORCHESTRATION_ONLY), (m, third_party_imports(m))


def test_the_dag_builder_imports_neither_torch_nor_the_stages_it_plans():
    """rules/common.smk imports the settings table and the workflow checks only: building the DAG loads no torch."""
    closure = module_closure("gwnpe.stages.settings", "gwnpe.stages.workflow")
    assert set(closure) <= {"gwnpe", "gwnpe.config", "gwnpe.errors", "gwnpe.provenance", "gwnpe.stages",
                            "gwnpe.stages.settings", "gwnpe.stages.workflow", "gwnpe.stages.resources", "gwnpe.gw",
                            "gwnpe.gw.domain",
                            "gwnpe.gw.priors", "gwnpe.gw.waveforms", "gwnpe.gw.noise", "gwnpe.gw.likelihood",
                            "gwnpe.products",
                            "gwnpe.products.common",
                            "gwnpe.products.injections"}, closure
    import subprocess
    import sys

    probe = "import sys, gwnpe.stages.settings, gwnpe.stages.workflow; print(sorted({'torch', 'zuko', 'dask'} & set(sys.modules)))"
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stdout + res.stderr


def test_the_settings_table_is_imported_by_nothing_but_stages():
    """Stage modules reach the config through the settings table; no library module does."""
    users = sorted(m for m, deps in GRAPH.items() if "gwnpe.stages.settings" in deps)
    assert users and all(m.startswith("gwnpe.stages.") for m in users), users


@pytest.mark.parametrize("stage", ["psd", "bank", "svd", "training_set", "injections", "bilby"])
def test_data_stages_do_not_run_network_or_inference_code(stage):
    """An edit of the network or the inference code must not rerun the (expensive) data stages or the reference
    sampler: their code hashes cover only what they import (a file helper importing the model loader once pulled
    the network into every stage's hash)."""
    from gwnpe.stages.settings import STAGES

    closure = module_closure(STAGES[stage].module)
    assert not [m for m in closure if m.startswith(("gwnpe.nn", "gwnpe.inference"))], closure
