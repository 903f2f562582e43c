# Two entry points: `make demo` (the main job end to end on the synthetic default) and
# `make test`. Both create .venv and install the project into it when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= out/demo

.PHONY: demo test install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ingest build-shards --dataset synthetic --size 96 --out $(DEMO_OUT)
	$(BIN)/shards verify $(DEMO_OUT)
	$(BIN)/shards stats $(DEMO_OUT) --preview $(DEMO_OUT)/preview.png
	$(BIN)/loaders bench --shards $(DEMO_OUT) --mode pairs --backend both --seconds 5

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) out

# Not in CI: 40 epochs from S3 (moto) through a fault-injecting proxy; samples lost must be 0,
# memory and descriptors flat; then the measured cost of verify="sha256". Prints the figures.
.PHONY: soak
soak: $(STAMP)
	$(BIN)/python tests/reliability/soak.py --epochs 40
