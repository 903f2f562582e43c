# Two entry points: `make demo` (the main job end to end on the synthetic default) and
# `make test`. Both create .venv and install the project into it when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= out/demo

.PHONY: demo compare test install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The demo's data is sized for the evaluation: every synthetic patient has a lesion, so the
# val and test splits hold enough abnormal pairs for a pair AUC (docs/train.md, "The demo").
DEMO_PATIENTS ?= 100
DEMO_LESIONS ?= 1.0
# 3:1:1 splits: about 20 patients each in val and test (8:1:1 left 10, too few for an interval).
DEMO_DATA := --dataset synthetic --patients $(DEMO_PATIENTS) --lesion-fraction $(DEMO_LESIONS) --size 96 \
	--splits 3:1:1
# One intra-op thread for training: the DataLoader worker has the other core.
DEMO_TRAIN ?= --encoder small --size 64 --batch-size 32 --lr 0.1 --epochs 1 --max-steps 200 \
	--refit-steps 70 --warmup-epochs 0.05 --workers 1 --device cpu --max-background 0

demo: $(STAMP)
	$(BIN)/ingest build-shards $(DEMO_DATA) --out $(DEMO_OUT)/shards
	$(BIN)/shards verify $(DEMO_OUT)/shards
	$(BIN)/shards stats $(DEMO_OUT)/shards --preview $(DEMO_OUT)/preview.png
	$(BIN)/loaders bench --shards $(DEMO_OUT)/shards --mode pairs --backend both --seconds 3
	rm -rf $(DEMO_OUT)/run
	OMP_NUM_THREADS=1 $(BIN)/train siamese --shards $(DEMO_OUT)/shards --out $(DEMO_OUT)/run $(DEMO_TRAIN) --no-progress
	$(BIN)/train evaluate --run $(DEMO_OUT)/run
	$(BIN)/ingest build-downstream $(DEMO_DATA) --task abnormal --out $(DEMO_OUT)/abnormal
	$(BIN)/train linear-eval --run $(DEMO_OUT)/run --shards $(DEMO_OUT)/abnormal --task abnormal
	$(BIN)/train report $(DEMO_OUT)/run

# Not in CI: the paper's comparison (Siamese, BYOL, SimCLR, random encoder, and the random one
# with BatchNorm statistics from the pairs; linear evaluation, abnormal vs normal) pretrained on
# the demo's data and evaluated on a downstream set of 300 patients (3:1:1 patch split: 243
# test patches; 38 could not tell the methods apart), about 30 minutes on 2 cores from nothing.
# Reruns skip what is done (the shard sets, finished runs and evaluations). One learning rate for
# all methods (the linear scaling rule gives 0.0375 at batch 32, too small to move LARS's weights
# in 400 steps) and SimCLR's small-batch temperature 0.5 (docs/train.md, "The comparison").
COMPARE_OUT ?= out/compare
COMPARE_DOWNSTREAM ?= --dataset synthetic --patients 300 --lesion-fraction 1.0 --size 96 --splits 3:1:1
COMPARE_TRAIN ?= --encoder small --size 64 --batch-size 32 --lr 0.1 --epochs 1 --max-steps 400 \
	--refit-steps 70 --warmup-epochs 0.05 --workers 1 --device cpu --max-background 0 \
	--temperature 0.5

compare: $(STAMP)
	test -f $(COMPARE_OUT)/shards/manifest.json || \
		$(BIN)/ingest build-shards $(DEMO_DATA) --out $(COMPARE_OUT)/shards
	test -f $(COMPARE_OUT)/abnormal300/manifest.json || $(BIN)/ingest build-downstream \
		$(COMPARE_DOWNSTREAM) --task abnormal --out $(COMPARE_OUT)/abnormal300
	OMP_NUM_THREADS=1 $(BIN)/train compare --pairs $(COMPARE_OUT)/shards \
		--downstream $(COMPARE_OUT)/abnormal300 --out $(COMPARE_OUT)/runs $(COMPARE_TRAIN) --no-progress

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) out

# Not in CI: 40 epochs from S3 (moto) through a fault-injecting proxy; samples lost must be 0,
# memory and descriptors flat; then the measured cost of verify="sha256". Prints the figures.
.PHONY: soak
soak: $(STAMP)
	$(BIN)/python tests/reliability/soak.py --epochs 40
