rule bank:
    """Frequency-domain h+ and hx of intrinsic prior draws (LALSimulation via bilby)."""
    input:
        priors=get_prior_file,
    output:
        bank=results("bank/bank.h5"),
    params:
        settings=settings("bank"),
        code=code("bank"),
    log:
        logs("bank.log"),
    benchmark:
        benchmarks("bank.tsv")
    threads: 1
    conda:
        "../envs/gwnpe.yaml"
    script:
        "../scripts/bank.py"
