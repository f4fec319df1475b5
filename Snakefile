# gwnpe: amortized neural posterior estimation for compact-binary GW signals.
# Thin on purpose: config + validation, includes, and the target rule. Every stage
# lives in rules/<stage>.smk and calls one gwnpe function through scripts/<stage>.py.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "rules/common.smk"


report: "report/workflow.rst"


rule all:
    input:
        get_final_output(),
    default_target: True


include: "rules/psd.smk"
include: "rules/asd_dataset.smk"
include: "rules/bank.smk"
include: "rules/svd.smk"
include: "rules/training_set.smk"
include: "rules/train.smk"
include: "rules/injections.smk"
include: "rules/pp.smk"
include: "rules/bilby.smk"
include: "rules/compare.smk"
include: "rules/accuracy.smk"
include: "rules/events.smk"
