from _helpers import configure_logging

from gwnpe.stages.events import run_event_stage
from gwnpe.stages.settings import with_runtime

configure_logging(snakemake)  # noqa: F821
run_event_stage(
    with_runtime(snakemake.params.settings, snakemake.config, "event_sampling"),  # noqa: F821
    event=dict(snakemake.params.event),  # noqa: F821
    model_path=snakemake.input.model,  # noqa: F821
    out_path=snakemake.output.result,  # noqa: F821
    threads=snakemake.threads,  # noqa: F821
)
