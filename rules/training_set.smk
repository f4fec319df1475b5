rule training_set:
    """Intrinsic waveforms generated in chunks on dask, compressed into the basis on the workers."""
    input:
        basis=results("svd/basis.h5"),
        priors=get_prior_file,
    output:
        training_set=results("training_set/training_set.h5"),
    params:
        settings=settings("training_set"),
        code=code("training_set"),
    log:
        logs("training_set.log"),
    benchmark:
        benchmarks("training_set.tsv")
    threads: 2
    conda:
        "../envs/gwnpe.yaml"
    script:
        "../scripts/training_set.py"
