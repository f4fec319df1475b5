from _helpers import configure_logging

from gwnpe.training import run_train_stage

configure_logging(snakemake)  # noqa: F821
settings = snakemake.params.settings  # noqa: F821
run_train_stage(
    settings,
    training_set_path=snakemake.input.training_set,  # noqa: F821
    basis_path=snakemake.input.basis,  # noqa: F821
    psd_paths=dict(zip(settings["detectors"], snakemake.input.psds)),  # noqa: F821
    out_model=snakemake.output.model,  # noqa: F821
    out_history=snakemake.output.history,  # noqa: F821
    out_plot=snakemake.output.plot,  # noqa: F821
    out_throughput=snakemake.output.throughput,  # noqa: F821
    checkpoint_path=snakemake.params.checkpoint,  # noqa: F821
    threads=snakemake.threads,  # noqa: F821
)
