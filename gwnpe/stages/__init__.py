"""Orchestration, one module per stage: read the config's settings (:mod:`gwnpe.stages.settings`) and
the input files, call the layers below, write the outputs with provenance through :mod:`gwnpe.products`."""
