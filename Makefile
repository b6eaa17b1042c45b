# Two entry points (see README): `make demo` and `make test` (pytest, then mypy). Both build a
# virtual environment in .venv with perfsdk installed in editable mode, so the
# Cython extensions are compiled in place and the doctests see them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.perfsdk-installed

.PHONY: install demo test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml setup.py perfsdk/_native/layout.py $(filter-out %/_layout.pxi,$(wildcard perfsdk/_native/*.pyx perfsdk/_native/*.pxd perfsdk/_native/*.pxi))
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --prefer-binary -e '.[test]'
	touch $@

# The main job: the demo shop run the traditional way and with perfsdk, compared (about 4 minutes).
demo: $(STAMP)
	$(BIN)/perfsdk demo --out perfsdk-demo

test: $(STAMP)
	$(BIN)/python -m pytest
	$(BIN)/python -m mypy perfsdk

# Full benchmark runs (the test suite runs each bench once, untimed).
bench: $(STAMP)
	mkdir -p .benchmarks
	$(BIN)/python -m pytest benches/speed --benchmark-enable --benchmark-only \
		--benchmark-group-by=group --benchmark-columns=min,median,mean,ops,rounds \
		--benchmark-sort=mean --benchmark-json=.benchmarks/latest.json
	$(BIN)/python benches/ratios.py .benchmarks/latest.json

clean:
	rm -rf $(VENV) build *.egg-info perfsdk/_native/*.c perfsdk/_native/*.so perfsdk/_native/_layout.pxi
