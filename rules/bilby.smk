rule bilby:
    """bilby + dynesty on one injection: same strain, PSDs, prior, waveform model and band as gwnpe.

    Reference run {r} of injection {i} (runs differ only in their seed; two give the reference's noise
    floor). A killed job resumes from bilby's checkpoint (results/{run}/bilby/injection_{i}/run_{r}/sampler)
    when rerun; `threads` become dynesty's pool.
    """
    input:
        injections=results("injections/injections.h5"),
        priors=get_prior_file,
        distance_lookup=get_distance_lookup,
    output:
        result=results("bilby/injection_{i}/run_{r}/result.hdf5"),
    params:
        settings=settings("bilby"),
        code=code("bilby"),
    log:
        results("bilby/injection_{i}/run_{r}/bilby.log"),
    benchmark:
        benchmarks("bilby/injection_{i}/run_{r}.tsv")
    threads: 2
    # the NPE stages first: a reference run takes the cores for a long time, and training should not wait for it
    priority: -10
    resources:
        runtime=240,
    conda:
        "../envs/gwnpe.yaml"
    script:
        "../scripts/bilby.py"


rule distance_lookup:
    """bilby's distance-marginalisation lookup table (minutes), built once and copied by every reference run."""
    input:
        priors=get_prior_file,
    output:
        table=results("bilby/distance_lookup.npz"),
    params:
        settings=settings("distance_lookup"),
        code=code("distance_lookup"),
    log:
        logs("distance_lookup.log"),
    benchmark:
        benchmarks("distance_lookup.tsv")
    priority: -10
    conda:
        "../envs/gwnpe.yaml"
    script:
        "../scripts/distance_lookup.py"
