# Helpers shared by the rules: validated config, paths, inputs, params.
import re

from snakemake.exceptions import WorkflowError

from gwnpe.errors import GwnpeError
from gwnpe.stages.settings import stage_code, stage_settings
from gwnpe.stages.workflow import check_config, comparison_indices, event_entry, injection_count, needs_distance_lookup

# Validate once at load time: a wrong key, type, range or prior stops here, before any job.
try:
    check_config(config)
except GwnpeError as exc:
    raise WorkflowError(f"gwnpe configuration error: {exc}") from None

RUN = config["run"]
RESULTS = f"results/{RUN}"
IFOS = config["detectors"]


wildcard_constraints:
    ifo="|".join(IFOS),
    r=r"\d+",


def results(path):
    """Path of an output of this run."""
    return f"{RESULTS}/{path}"


def logs(path):
    return f"{RESULTS}/logs/{path}"


def benchmarks(path):
    return f"{RESULTS}/benchmarks/{path}"


def settings(stage):
    """The config keys ``stage`` depends on (gwnpe.stages.settings.STAGES), passed through params so
    that changing one reruns exactly the stages that use it."""
    return stage_settings(config, stage)


def code(stage):
    """Hash of the stage's module and of every gwnpe module it imports (computed from the sources),
    so that a library edit reruns exactly the stages that run the edited code."""
    return stage_code(stage)


def get_psd_files(wildcards=None):
    return expand(results("psd/{ifo}_psd.txt"), ifo=IFOS)


def get_strain_input(wildcards):
    """User strain files (psd.source: files) are inputs, so a missing one is named before any job runs."""
    if config["psd"]["source"] == "files":
        return [config["psd"]["strain_files"][wildcards.ifo]]
    return []


def get_prior_file(wildcards=None):
    return config["priors"]


N_INJECTIONS = injection_count(config)


def get_injection_file(wildcards=None):
    """A user injection file is an input, so a missing one is named before any job runs."""
    return [config["injections"]["file"]] if config["injections"]["file"] else []


def get_posterior_files(wildcards=None):
    return expand(results("posteriors/injection_{i}.hdf5"), i=range(N_INJECTIONS))


def get_corner_plots(wildcards=None):
    return expand(results("posteriors/corner_{i}.png"), i=range(min(config["injections"]["corner"], N_INJECTIONS)))


REFERENCE_RUNS = list(range(config["comparison"]["reference_runs"]))
try:
    COMPARED = comparison_indices(config["comparison"], N_INJECTIONS)
except GwnpeError as exc:
    raise WorkflowError(f"gwnpe configuration error: {exc}") from None


NEEDS_DISTANCE_LOOKUP = bool(COMPARED) and needs_distance_lookup(config)


def get_distance_lookup(wildcards=None):
    """The shared distance lookup table where the reference runs marginalise over distance, else nothing."""
    return [results("bilby/distance_lookup.npz")] if NEEDS_DISTANCE_LOOKUP else []


def get_comparison_outputs(wildcards=None):
    """The Bilby comparison's tables and overlays (nothing when comparison.injections is 0 or [])."""
    if not COMPARED:
        return []
    tables = ("jsd.csv", "summary.json", "jsd_table.csv", "times.csv", "evidence.csv")
    return [
        *[results(f"comparison/{t}") for t in tables],
        *expand(results("comparison/corner_{i}.png"), i=COMPARED),
    ]


def get_accuracy_indices(wildcards=None):
    """The accuracy campaign's events, known once the injections exist (the injections rule is a checkpoint)."""
    from gwnpe.products.injections import read_network_snrs
    from gwnpe.stages.workflow import accuracy_indices

    path = checkpoints.injections.get().output.injections
    return accuracy_indices(config["accuracy"], read_network_snrs(path))


def get_accuracy_results(wildcards=None):
    return expand(results("accuracy/injection_{i}.hdf5"), i=get_accuracy_indices())


def get_accuracy_outputs(wildcards=None):
    if not config["accuracy"]["injections"]:
        return []
    return [results("accuracy/accuracy.csv"), results("accuracy/summary.json"), results("accuracy/efficiency.png")]


EVENTS = [e["name"] for e in config["events"]["list"]]


wildcard_constraints:
    name="|".join(re.escape(n) for n in EVENTS) if EVENTS else "(?!)",


def get_event_strain(wildcards):
    """An event's strain files are inputs, so a missing one is named before any job runs."""
    return list(event_entry(config, wildcards.name)["strain_files"].values())


def get_asd_dataset_outputs(wildcards=None):
    if not config["asd_dataset"]["size"]:
        return []
    return [results("asd_dataset/asd_dataset.h5"), results("asd_dataset/asd_spread.png")]


def get_train_asd_dataset(wildcards=None):
    """The ASD dataset, for a noise-conditioned network only."""
    if not config["model"]["noise_conditioning"]["enabled"]:
        return []
    return results("asd_dataset/asd_dataset.h5")


def get_injections_asd_dataset(wildcards=None):
    """The ASD dataset, for injections in held-out noise only."""
    if config["injections"]["asd_source"] != "held_out":
        return []
    return results("asd_dataset/asd_dataset.h5")


def get_asd_dataset_strain(wildcards=None):
    """The files source's strain files are inputs, so a missing one is named before any job runs."""
    cfg = config["asd_dataset"]
    return list(cfg["strain_files"].values()) if cfg["size"] and cfg["source"] == "files" else []


def get_event_outputs(wildcards=None):
    if not EVENTS:
        return []
    return [results("events/events.csv"), *expand(results("events/corner_{name}.png"), name=EVENTS)]


TIMED_STAGES = ("bank", "svd", "training_set", "train", "injections", "posteriors", "pp")


def get_timed_benchmarks(wildcards=None):
    return [*expand(benchmarks("psd/{ifo}.tsv"), ifo=IFOS), *[benchmarks(f"{s}.tsv") for s in TIMED_STAGES]]


def get_final_output():
    return [
        *get_psd_files(),
        *expand(results("psd/{ifo}_psd.png"), ifo=IFOS),
        results("bank/bank.h5"),
        results("svd/basis.h5"),
        results("svd/mismatch.png"),
        results("training_set/training_set.h5"),
        results("model/model.pt"),
        results("model/history.csv"),
        results("model/throughput.csv"),
        results("model/loss.png"),
        results("injections/injections.h5"),
        results("pp/pp.json"),
        results("pp/pp.png"),
        results("pp/pvalues.csv"),
        *get_corner_plots(),
        results("report/timings.csv"),
        results("report/provenance.csv"),
        *get_comparison_outputs(),
        *get_accuracy_outputs(),
        *get_event_outputs(),
        *get_asd_dataset_outputs(),
    ]
