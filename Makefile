# gwnpe: two commands from a fresh checkout.
#   make demo   install, then run the whole workflow on config/config.yaml (profiles/local)
#   make test   install, then run the test suite (everything: what CI runs)
#   make test-fast  the tests not marked slow (a few minutes; the loop while editing)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= config/config.yaml
PROFILE ?= profiles/local
RUN = $(shell $(BIN)/python -c "import yaml,sys; print(yaml.safe_load(open('$(CONFIG)'))['run'])")
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast lint clean

install: $(STAMP)

# Reinstall only when the pins change; `make install` twice does nothing the second time.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip
	$(BIN)/pip install --quiet -e .
	touch $(STAMP)

demo: install
	$(BIN)/gwnpe check $(CONFIG)
	$(BIN)/snakemake --workflow-profile $(PROFILE) --configfile $(CONFIG)
	$(BIN)/snakemake --workflow-profile $(PROFILE) --configfile $(CONFIG) --report results/$(RUN)/report.html

test: install
	$(BIN)/python -m pytest tests

test-fast: install
	$(BIN)/python -m pytest tests -m "not slow"

lint: install
	$(BIN)/snakemake --lint --configfile config/tiny.yaml

clean:
	rm -rf results logs .snakemake
