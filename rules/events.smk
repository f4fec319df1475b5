rule event_sampling:
    """One real event (an events.list entry) with the trained model: the segment at its GPS time, Welch PSDs
    from the data before it, the sky rotated to the event time, NPE+IS to the target ESS."""
    input:
        model=results("model/model.pt"),
        strain=get_event_strain,
    output:
        result=results("events/{name}.hdf5"),
    params:
        settings=settings("event_sampling"),
        event=lambda wildcards: event_entry(config, wildcards.name),
        code=code("event_sampling"),
    log:
        logs("events/{name}.log"),
    benchmark:
        benchmarks("events/{name}.tsv")
    # likelihoods of each batch on a dask cluster of this many workers
    threads: 2
    conda:
        "../envs/gwnpe.yaml"
    script:
        "../scripts/event_sampling.py"


rule event_corner:
    """Corner plot of one event: NPE samples and the importance-weighted ones."""
    input:
        result=results("events/{name}.hdf5"),
    output:
        plot=report(
            results("events/corner_{name}.png"),
            caption="../report/events.rst",
            category="Events",
            labels={"event": "{name}"},
        ),
    params:
        code=code("event_corner"),
    log:
        logs("events/corner_{name}.log"),
    benchmark:
        benchmarks("events/corner_{name}.tsv")
    conda:
        "../envs/gwnpe.yaml"
    script:
        "../scripts/event_corner.py"


rule events:
    """Table of the events: chirp mass and distance (importance-weighted median, 90% interval), efficiency,
    ESS, Pareto k-hat, time per effective sample, log Bayes factor and ASD flags."""
    input:
        results=expand(results("events/{name}.hdf5"), name=EVENTS),
    output:
        table=report(results("events/events.csv"), caption="../report/events.rst", category="Events",
                     labels={"event": "table"}),
    params:
        settings=settings("events"),
        names=EVENTS,
        code=code("events"),
    log:
        logs("events.log"),
    benchmark:
        benchmarks("events.tsv")
    conda:
        "../envs/gwnpe.yaml"
    script:
        "../scripts/events.py"
