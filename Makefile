# The workbook's main commands: `make lab` (JupyterLab in the project's environment), `make figures` (README
# figures and metrics, default profile) and `make test` (unit tests plus every notebook executed with nbval in the
# smoke profile).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
NOTEBOOKS := $(wildcard notebooks/*.ipynb)
# An offline copy of the data sets: a folder with a `provision.py` that writes them into the data folder (this
# repository's CI keeps one in ../shared/data). Without one, the loaders download what they need on first use.
OFFLINE_DATA ?= ../shared/data

.PHONY: venv data lab test figures check-answers book weights benchmarks clean-notebooks

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m ipykernel install --sys-prefix --name aml-workbook --display-name "AML workbook (.venv)" >/dev/null
	touch $@

venv: $(VENV)/.installed

# Provisions the data folder (AML_DATA_DIR, default data/) from the offline copy OFFLINE_DATA, where there is one.
data: venv
	@if [ -f "$(OFFLINE_DATA)/provision.py" ]; then $(PY) "$(OFFLINE_DATA)/provision.py" $${AML_DATA_DIR:-data}; \
	else echo "no offline copy in $(OFFLINE_DATA) (set OFFLINE_DATA=<folder with provision.py>): the notebooks download the data on first use (about 200 MB)"; fi

# JupyterLab from the project's environment: the notebooks' `python3` kernel resolves to .venv's Python (the
# environment's kernel specs come first), and the kernel inherits AML_PROFILE and AML_DATA_DIR from this shell.
# LAB_ARGS passes options, e.g. `make lab LAB_ARGS=--no-browser`; as root (a container) it adds --allow-root.
LAB_ARGS ?=
ROOT_ARG := $(if $(filter 0,$(shell id -u)),--allow-root)
lab: venv
	@echo "JupyterLab on notebooks/ with .venv's Python; profile $${AML_PROFILE:-default}, data folder $${AML_DATA_DIR:-data/}; Ctrl-C twice stops it"
	JUPYTER_PREFER_ENV_PATH=1 $(VENV)/bin/jupyter lab $(ROOT_ARG) $(LAB_ARGS) notebooks/

test: venv
	AML_PROFILE=smoke $(PY) -m pytest tests $(NOTEBOOKS) --nbval-lax --nbval-current-env --nbval-cell-timeout=900 -p no:cacheprovider

# Executes every notebook in the default profile (or AML_PROFILE=full), a progress line per cell; the committed
# notebooks stay without outputs: the executed copies go to build/executed (ignored by git, each recording the digest
# of the source it ran, tools/execute.py), figures and metrics to figures/. Then each notebook's wall time is
# printed and its per-section times go to figures/timings.json and the README (tools/timings.py), and every number
# quoted in an answer must be printed by its section (tools/answers.py).
EXECUTED := build/executed
CHECKED := 01_diffusion 02_gpt_alice 03_vicreg
figures: venv
	AML_PROFILE=$${AML_PROFILE:-default} $(PY) -m tools.execute $(NOTEBOOKS) --out $(EXECUTED)
	$(PY) -m tools.timings $(foreach nb,$(NOTEBOOKS),$(EXECUTED)/$(notdir $(nb)))
	$(PY) -m tools.readme
	$(PY) -m tools.answers $(foreach nb,$(CHECKED),$(EXECUTED)/$(nb).ipynb)

# The answer check alone, on notebooks `make figures` has executed.
check-answers: venv
	$(PY) -m tools.answers $(foreach nb,$(CHECKED),$(EXECUTED)/$(nb).ipynb)

# The notebooks `make figures` executed, as a book in build/book/ (open build/book/index.html): Sphinx + MyST-NB with
# sphinx-book-theme (configuration in book/, contents in book/book.toml), offline, MathJax from a local copy. It
# executes nothing and refuses stale copies; `python scripts/check_book_in_browser.py` then checks it in Chromium.
book: venv
	$(PY) -m tools.book $(EXECUTED) --out build/book

# Retrains notebook 03's three VICReg models and rewrites data/weights/*_<profile>.pt (default: 81 epochs, about 6 hours
# on 2 cores). An interrupted run resumes from its last epoch (data/checkpoints/); `make weights FRESH=1` starts over.
weights: venv data
	AML_PROFILE=$${AML_PROFILE:-default} $(PY) -m helpers.vicreg_models --retrain $(if $(filter 1,$(FRESH)),--fresh)

# The speed benchmarks (minutes); the recipe ranking and the accuracy curve (hours) are run by hand, see the README.
benchmarks: venv
	for b in benchmarks/bench_*.py; do $(PY) "$$b" || exit 1; done

# Clears outputs in place; notebooks that carry outputs are named first and need YES=1 (nothing is wiped unasked).
clean-notebooks: venv
	@with=$$($(PY) -c 'import json,sys; [print(p) for p in sys.argv[1:] if any(c.get("outputs") or c.get("execution_count") for c in json.load(open(p, encoding="utf-8"))["cells"] if c["cell_type"] == "code")]' $(NOTEBOOKS)); \
	if [ -z "$$with" ]; then echo "no notebook carries outputs: nothing to clear"; exit 0; fi; \
	echo "these notebooks carry outputs:"; echo "$$with" | sed 's/^/  /'; \
	if [ "$(YES)" != 1 ]; then echo "clearing them loses those outputs: run \`make clean-notebooks YES=1\` to confirm"; exit 1; fi; \
	$(VENV)/bin/jupyter nbconvert --clear-output --inplace $$with
