# Two entry points: `make demo` and `make test`. Both create .venv on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed-dev
CHROMIUM ?= /usr/bin/chromium

.PHONY: demo test venv lint serve browser clean

$(STAMP): pyproject.toml constraints-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints-dev.txt -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

# Debian's Chromium for the browser tests (never a browser download by playwright).
browser:
	@if [ ! -x $(CHROMIUM) ]; then \
	  echo "Installing Debian's chromium for the browser tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium chromium-driver; \
	fi

demo: $(STAMP)
	$(VENV)/bin/stethoscope demo

serve: $(STAMP)
	$(VENV)/bin/stethoscope serve

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: $(STAMP) browser
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
