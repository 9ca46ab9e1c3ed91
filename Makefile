# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Both create (or refresh, when pyproject.toml or constraints.txt changed) a virtual
# environment in .venv and install wtours with every extra, pinned by constraints.txt.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# `make demo DEMO_ARGS=--full`: the study presets in full, long enough for each to pass its floor.
DEMO_ARGS ?=

.PHONY: venv test demo lint clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[all,test]'
	touch $(STAMP)

venv: $(STAMP)

ASSETS := .cache/assets/.done

$(ASSETS): scripts/get_test_assets.py $(STAMP)
	$(BIN)/python scripts/get_test_assets.py .cache/assets
	touch $(ASSETS)

test: $(STAMP) $(ASSETS)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: $(STAMP) $(ASSETS)
	$(BIN)/wtours demo --detector .cache/assets/yolov3-tiny/yolov3-tiny.cfg $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info demo
