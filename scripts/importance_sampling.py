from _helpers import configure_logging

from gwnpe.stages.importance_sampling import SECTION_STAGE, run_importance_sampling_stage
from gwnpe.stages.settings import with_runtime

configure_logging(snakemake)  # noqa: F821
# the comparison's NPE+IS (rule importance_sampling) or the accuracy campaign's (rule accuracy_sampling)
section = snakemake.params.section  # noqa: F821
run_importance_sampling_stage(
    with_runtime(snakemake.params.settings, snakemake.config, SECTION_STAGE[section]),  # noqa: F821
    model_path=snakemake.input.model,  # noqa: F821
    injections_path=snakemake.input.injections,  # noqa: F821
    index=int(snakemake.wildcards.i),  # noqa: F821
    out_path=snakemake.output.result,  # noqa: F821
    threads=snakemake.threads,  # noqa: F821
    section=section,
)
