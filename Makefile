# docground: `make install` builds .venv/ with everything; `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Debian packages the project uses: Tesseract (CPU OCR), Redis (broker for tests), Chromium (viewer test),
# LibreOffice without its GUI and metric-compatible fonts (Office, web and text documents to PDF).
APT_PACKAGES := tesseract-ocr tesseract-ocr-eng tesseract-ocr-chi-sim tesseract-ocr-chi-tra \
	tesseract-ocr-jpn tesseract-ocr-kor tesseract-ocr-fra tesseract-ocr-deu tesseract-ocr-osd \
	tesseract-ocr-jpn-vert tesseract-ocr-chi-sim-vert tesseract-ocr-chi-tra-vert redis-server chromium \
	libreoffice-core-nogui libreoffice-writer-nogui libreoffice-calc-nogui libreoffice-impress-nogui \
	fonts-liberation2 fonts-crosextra-carlito fonts-crosextra-caladea
# torch: the CPU build unless a GPU is present. TORCH_INDEX may name an extra index (e.g. the PyTorch CPU one).
TORCH_VERSION ?= 2.13.0
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
TORCH_SPEC := $(if $(HAS_GPU),torch==$(TORCH_VERSION),torch==$(TORCH_VERSION)+cpu)
EXTRAS := dev,bench$(if $(HAS_GPU),$(comma)gpu)
comma := ,
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install system-packages test bench bench-gpu lint clean

install: system-packages $(VENV)/.installed

system-packages:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@# Node.js and npm type-check the generated TypeScript client (tests/test_typescript_client.py); a
	@# nodejs from NodeSource already bundles npm, so Debian's are installed only when npm is missing.
	@command -v npm >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null; }

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))
	echo "$(TORCH_SPEC)" > $(VENV)/constraints.txt
	$(PIP) install -q -c $(VENV)/constraints.txt -e ".[$(EXTRAS)]"
	touch $@

# pytest exits 5 when it collects nothing: that is not a failure.
test:
	$(PY) -m pytest -q; rc=$$?; [ $$rc = 5 ] && exit 0; exit $$rc

bench:
	$(PY) bench/ingest.py

lint:
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
