# Two entry points: `make demo` and `make test`. Both create .venv on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
CHROMIUM ?= /usr/bin/chromium
# torch is pinned (constraints-dev.txt) to the build the project's machines install; elsewhere,
# add PIP_EXTRA_INDEX_URL for PyTorch's CPU wheels to avoid the large CUDA build.
INSTALL := $(PIP) install -q -c constraints-dev.txt

.PHONY: demo test lint serve browser clean

$(PY):
	@$(PYTHON) -c "import ensurepip, venv" 2>/dev/null || { \
	  echo "error: $(PYTHON) cannot create virtual environments; on Debian/Ubuntu install python3-venv"; \
	  exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# the demo needs the server and torch only
$(VENV)/.installed-demo: pyproject.toml constraints-dev.txt | $(PY)
	$(INSTALL) -e ".[server,torch]"
	touch $@

# the tests need everything (dev extras: pytest, playwright, ruff, scikit-learn)
$(VENV)/.installed-dev: pyproject.toml constraints-dev.txt | $(PY)
	$(INSTALL) -e ".[dev]"
	touch $@ $(VENV)/.installed-demo

# Debian's Chromium for the browser tests (never a browser download by playwright).
browser:
	@if [ ! -x $(CHROMIUM) ]; then \
	  echo "Installing Debian's chromium for the browser tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium chromium-driver; \
	fi

demo: $(VENV)/.installed-demo
	$(VENV)/bin/stethoscope demo

serve: $(VENV)/.installed-demo
	$(VENV)/bin/stethoscope serve

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .

test: $(VENV)/.installed-dev browser
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
