# Lightbox: make run (install and open the sample), make test (install everything, run all tests).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PACKAGING := $(VENV)/.packaging

.PHONY: run test bench screenshot sample package package-test system-runtime system-test clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

system-runtime:
	tools/system-deps installers/linux/debian-runtime.txt

system-test:
	tools/system-deps installers/linux/debian-runtime.txt installers/linux/debian-test.txt

run: system-runtime $(STAMP)
	$(BIN)/lightbox resources/sample

test: system-test $(STAMP)
	tools/run-tests

bench: system-test $(STAMP)
	$(BIN)/python bench/run.py

screenshot: system-test $(STAMP)
	$(BIN)/python tools/screenshot.py resources/sample -o screenshots/main-window.png

$(PACKAGING): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[package]'
	touch $(PACKAGING)

# The Linux bundle in dist/lightbox (installers/linux/install.sh installs it for this user).
package: system-runtime $(PACKAGING)
	$(BIN)/pyinstaller --noconfirm --clean --log-level WARN --distpath dist --workpath build/pyinstaller \
		installers/pyinstaller/lightbox.spec

package-test: $(STAMP)
	LIGHTBOX_REQUIRE_BUNDLE=1 tools/run-tests tests/packaging

sample: $(STAMP)
	$(BIN)/python resources/make_sample.py resources/sample

clean:
	rm -rf $(VENV) build dist *.egg-info
