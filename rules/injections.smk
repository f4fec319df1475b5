checkpoint injections:
    """Injection parameters from the prior (or a file); strain = signal + Gaussian noise from the run's PSDs."""
    input:
        psds=get_psd_files(),
        priors=get_prior_file,
        file=get_injection_file,
        asd_dataset=get_injections_asd_dataset,
    output:
        injections=results("injections/injections.h5"),
    params:
        settings=settings("injections"),
        code=code("injections"),
    log:
        logs("injections.log"),
    benchmark:
        benchmarks("injections.tsv")
    threads: 1
    conda:
        "../envs/gwnpe.yaml"
    script:
        "../scripts/injections.py"


rule posteriors:
    """NPE posteriors of every injection, sampled in batches; bilby Result files."""
    input:
        model=results("model/model.pt"),
        injections=results("injections/injections.h5"),
    output:
        posteriors=get_posterior_files(),
    params:
        settings=settings("posteriors"),
        code=code("posteriors"),
    log:
        logs("posteriors.log"),
    benchmark:
        benchmarks("posteriors.tsv")
    threads: 2
    conda:
        "../envs/gwnpe.yaml"
    script:
        "../scripts/posteriors.py"


rule corner:
    """Corner plot of one injection's posterior with the truth marked."""
    input:
        posterior=results("posteriors/injection_{i}.hdf5"),
    output:
        plot=report(
            results("posteriors/corner_{i}.png"),
            caption="../report/corner.rst",
            category="Posteriors",
            labels={"injection": "{i}"},
        ),
    params:
        code=code("corner"),
    log:
        logs("corner/{i}.log"),
    benchmark:
        benchmarks("corner/{i}.tsv")
    conda:
        "../envs/gwnpe.yaml"
    script:
        "../scripts/corner.py"
