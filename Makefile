# One-command entry points. Everything installs into .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install test test-slow test-docker lint serve models bench loadtest clean

# The stamp is rebuilt whenever pyproject.toml changes, so a new dependency is never missed.
$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo ">> installing berth with [train,dev,loadtest] into $(VENV) (first time: a few minutes)"
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[train,dev,loadtest]'
	@touch $@

install: $(VENV)/.installed

lint: install
	$(BIN)/ruff check .

test: install lint
	$(BIN)/python -m pytest -q

# Long checks: real MiniLM, shared data sets, parity against references, soak.
test-slow: install
	$(BIN)/python -m pytest -q -m slow

# The compose stack (needs ../shared/tools/docker-sandbox.sh up; takes minutes).
test-docker: install
	$(BIN)/python -m pytest -q -m docker

# Build any missing default bundle into models/ (BERTH_DEFAULT_MODELS limits which).
models: install
	$(BIN)/berth models --models-dir models

serve: models
	$(BIN)/berth serve --models-dir models --port $${BERTH_PORT:-8000}

bench: install models
	$(BIN)/berth bench --models-dir models

loadtest: install
	$(BIN)/python -m loadtest.run $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
