"""One settings table: for each stage, the config keys its outputs depend on, and its code.

The same table feeds a rule's ``params:`` (so that changing a key reruns exactly the stages that
depend on it) and the provenance a stage stores in its outputs, so the two cannot drift apart. It
holds science keys only: runtime keys (:data:`RUNTIME_KEYS`: dask workers, retries, the training
device, checkpoint intervals, download caches) change how a stage runs, not what it makes, and
reach the stage through :func:`with_runtime` without rerunning anything. Defaults live only in
``config/schema.yaml``.

Every stage module imports this one, so it imports nothing but the config helpers: its code is in
every stage's code hash. The whole-config checks that Snakemake runs when it builds the DAG are
:mod:`gwnpe.stages.workflow`'s.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from ..config import config_subset


@dataclass(frozen=True)
class Stage:
    """A stage: its module (whose import closure is its code) and the config keys it depends on.

    ``keys`` are top-level keys or dotted paths; ``runtime`` are the runtime keys it also reads.
    """

    module: str
    keys: tuple[str, ...]
    runtime: tuple[str, ...] = ()


_EVENT = ("seed", "detectors", "trigger_time", "priors", "domain", "waveform")
#: The segment and its grid without the window's roll-off (which only the stages that meet windowed
#: data's noise level depend on: training, injections and those using their PSDs).
_GRID = ("domain.duration", "domain.post_trigger_duration", "domain.sampling_frequency", "domain.f_min", "domain.f_max")

#: stage -> its module and the config keys that shape its outputs.
STAGES: dict[str, Stage] = {
    "psd": Stage("gwnpe.stages.psd", ("seed", "trigger_time", "detectors", *_GRID, "psd"), ("psd.cache_dir",)),
    "bank": Stage("gwnpe.stages.bank", ("seed", "priors", *_GRID, "waveform", "bank")),
    "svd": Stage("gwnpe.stages.svd", ("seed", "detectors", "priors", *_GRID, "svd")),
    "training_set": Stage(
        "gwnpe.stages.training_set",
        ("seed", "priors", *_GRID, "waveform", "training_set.size", "training_set.chunk_size"),
        ("training_set.retries", "dask"),
    ),
    "train": Stage("gwnpe.stages.train", (*_EVENT, "model", "training"), ("training.device",)),
    "injections": Stage("gwnpe.stages.injections", (*_EVENT, "injections.count", "injections.file", "injections.asd_source",
                                                    "model.noise_conditioning.held_out_fraction")),
    "posteriors": Stage("gwnpe.stages.posteriors", ("seed", "injections.n_samples", "injections.batch_events")),
    "corner": Stage("gwnpe.stages.report", ()),
    "pp": Stage("gwnpe.stages.pp", ()),
    "timings": Stage("gwnpe.stages.report", ()),
    # the provenance table of the report is a table of the whole config
    "provenance": Stage("gwnpe.stages.report", ("*",)),
    "bilby": Stage("gwnpe.stages.bilby", (*_EVENT, "comparison.sampler", "comparison.likelihood"),
                   ("comparison.sampler.checkpoint_interval",)),
    "distance_lookup": Stage("gwnpe.stages.bilby", (*_EVENT, "comparison.likelihood.marginalization")),
    "importance_sampling": Stage("gwnpe.stages.importance_sampling",
                                 (*_EVENT, "comparison.n_samples", "comparison.target_ess", "comparison.max_samples"),
                                 ("dask",)),
    "accuracy_sampling": Stage("gwnpe.stages.importance_sampling", (*_EVENT, "accuracy"), ("dask",)),
    "accuracy": Stage("gwnpe.stages.accuracy", ("accuracy",)),
    # one job per event: its entry of events.list reaches it apart (rule param), so adding an event reruns no other
    "asd_dataset": Stage("gwnpe.stages.asd_dataset", ("seed", "detectors", *_GRID, "psd.noise_curve", "asd_dataset"),
                         ("asd_dataset.chunk_size", "dask")),
    "event_sampling": Stage("gwnpe.stages.events",
                            (*_EVENT, "events.n_samples", "events.target_ess", "events.max_samples", "events.refine",
                             "events.psd_duration", "accuracy.refinement"), ("dask",)),
    "event_corner": Stage("gwnpe.stages.events", ()),
    "events": Stage("gwnpe.stages.events", ("events.list",)),
    "compare": Stage("gwnpe.stages.compare", ("seed", "priors", "comparison.jsd_bootstrap", "comparison.sampler")),
    "compare_corner": Stage("gwnpe.stages.compare", ()),
}

#: Keys read only by the checks before any job (gwnpe.stages.resources): no stage reads them.
CHECK_KEYS = ("limits",)

#: Keys that change how a stage runs but not what it makes: never rerun triggers, never in provenance.
RUNTIME_KEYS = tuple(sorted({k for s in STAGES.values() for k in s.runtime} | set(CHECK_KEYS)))


def _drop(tree: dict, dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        node = node.get(part)
        if not isinstance(node, dict):
            return
    node.pop(leaf, None)


def stage_settings(config: dict, stage: str) -> dict:
    """The science settings of ``stage``: its keys of a validated config, runtime keys removed.

    Works on a full config or on a dict that already holds only those keys (e.g. a stage's params),
    so a stage computes its provenance with this function whatever it was given.
    """
    keys = STAGES[stage].keys
    if keys == ("*",):
        out = copy.deepcopy(config)
    else:
        out = copy.deepcopy(config_subset(config, *keys))
    for key in RUNTIME_KEYS:
        _drop(out, key)
    return out


def with_runtime(settings: dict, config: dict, stage: str) -> dict:
    """``settings`` (a stage's params) plus the runtime keys the stage reads, taken from ``config``."""
    out = copy.deepcopy(settings)
    runtime = config_subset(config, *STAGES[stage].runtime)

    def merge(dst: dict, src: dict) -> None:
        for k, v in src.items():
            if isinstance(v, dict) and isinstance(dst.get(k), dict):
                merge(dst[k], v)
            else:
                dst[k] = copy.deepcopy(v)

    merge(out, runtime)
    return out


def stage_code(stage: str) -> str:
    """Hash of the stage module's source and of every gwnpe module it imports (see :func:`gwnpe.provenance.code_hash`)."""
    from ..provenance import code_hash

    return code_hash(STAGES[stage].module)
