rule training_set:
    """Intrinsic waveforms generated in chunks on dask, compressed into the basis on the workers."""
    input:
        basis=results("svd/basis.h5"),
        priors=get_prior_file,
    output:
        training_set=results("training_set/training_set.h5"),
    params:
        settings=section("seed", "priors", "domain", "waveform", "training_set", "dask"),
        code=code_version(
            "gwnpe.training_set", "gwnpe.cluster", "gwnpe.waveforms", "gwnpe.priors", "gwnpe.svd", "gwnpe.provenance"
        ),
    log:
        logs("training_set.log"),
    benchmark:
        benchmarks("training_set.tsv")
    threads: 2
    conda:
        "../envs/gwnpe.yaml"
    script:
        "../scripts/training_set.py"
