# featurebridge: `make demo` and `make test` work from a fresh clone with
# only Python 3.11 and Java 17 installed.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# `make bench`/`make bench-full` also install the `spark` extra (pyspark, for the
# Spark ML approach); setup and test do not.
BENCH_STAMP := $(VENV)/.bench-installed

# Beam's Flink and Spark job servers (Java, from Maven Central), built by `make engines`.
# Keep the version in step with java/engines/pom.xml and pipelines/engines.py.
JAVA_BEAM_VERSION := 2.62.0
ENGINES_DIR ?= $(HOME)/.cache/featurebridge/engines/beam-$(JAVA_BEAM_VERSION)
ENGINES_STAMP := $(ENGINES_DIR)/.built
HAVE_JAVA := $(shell command -v java >/dev/null 2>&1 && command -v mvn >/dev/null 2>&1 && echo yes)
export FEATUREBRIDGE_ENGINES := $(ENGINES_DIR)

.PHONY: setup engines browser demo test test-fast bench bench-full clean

setup: $(STAMP)

engines: $(ENGINES_STAMP)

$(ENGINES_STAMP): java/engines/pom.xml java/engines/flink/pom.xml java/engines/spark/pom.xml $(wildcard java/engines/*/src/main/resources/*)
	@test -n "$(HAVE_JAVA)" || { echo "make engines needs Java 17 and Maven 3.8+ on PATH (Debian: apt install openjdk-17-jdk-headless maven)."; exit 1; }
	@echo "Building Beam $(JAVA_BEAM_VERSION)'s Flink and Spark job servers from Maven Central into $(ENGINES_DIR) (~400 MB, once)"
	mvn -q -B -f java/engines/pom.xml package -Dengines.dir=$(ENGINES_DIR)
	touch $@

# The engine and Java tests run when Java and Maven are here; else they skip (fail with CI=true).
ENGINES_FOR_TESTS := $(if $(HAVE_JAVA),$(ENGINES_STAMP),)

$(STAMP): setup.py constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 or run 'make PYTHON=/path/to/python3.11 ...'"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24" wheel setuptools
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test,bench]"
	touch $(STAMP)

demo: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/featurebridge demo --output demo_output --overwrite

# The report's browser test (tests/test_report_browser.py) drives Debian's chromium
# through its chromedriver: installed here when missing and we can (root with
# apt-get); else one line says how, and that test skips (fails with CI=true).
CHROMIUM ?= /usr/bin/chromium
CHROMEDRIVER ?= /usr/bin/chromedriver
browser:
	@if [ -x $(CHROMIUM) ] && [ -x $(CHROMEDRIVER) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "Installing Debian's chromium and chromium-driver for the report's browser test"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 \
	    || { apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null; } \
	    || echo "Could not install chromium and chromium-driver with apt-get: the browser test will skip (fail with CI=true)."; \
	else \
	  echo "The report's browser test needs Debian's chromium: run 'sudo apt-get install -y chromium chromium-driver' (without them it skips; with CI=true it fails)."; \
	fi

test: $(STAMP) $(ENGINES_FOR_TESTS) browser
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest -q --durations=15 tests

test-fast: $(STAMP) $(ENGINES_FOR_TESTS) browser
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest -q -m "not slow" tests

$(BENCH_STAMP): $(STAMP) setup.py constraints.txt
	$(PY) -m pip install --quiet -c constraints.txt -e ".[bench,spark]"
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m benchmarks.run --quick --write-results

bench-full: $(BENCH_STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m benchmarks.run --full --write-results

clean:
	rm -rf $(VENV) demo_output benchmarks/data benchmarks/out .pytest_cache
