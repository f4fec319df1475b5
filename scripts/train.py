from _helpers import configure_logging

from gwnpe.stages.settings import with_runtime
from gwnpe.stages.train import TrainOutputs, run_train_stage

configure_logging(snakemake)  # noqa: F821
settings = with_runtime(snakemake.params.settings, snakemake.config, "train")  # noqa: F821
run_train_stage(
    settings,
    training_set_path=snakemake.input.training_set,  # noqa: F821
    basis_path=snakemake.input.basis,  # noqa: F821
    psd_paths=dict(zip(settings["detectors"], snakemake.input.psds)),  # noqa: F821
    asd_dataset_path=getattr(snakemake.input, "asd_dataset", None) or None,  # noqa: F821
    out=TrainOutputs(
        model=snakemake.output.model,  # noqa: F821
        history=snakemake.output.history,  # noqa: F821
        plot=snakemake.output.plot,  # noqa: F821
        checkpoint=snakemake.params.checkpoint,  # noqa: F821
        throughput=snakemake.output.throughput,  # noqa: F821
    ),
    threads=snakemake.threads,  # noqa: F821
)
