# The workbook's two main commands: `make figures` (README figures and metrics, default profile)
# and `make test` (unit tests plus every notebook executed with nbval in the smoke profile).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
NOTEBOOKS := $(wildcard notebooks/*.ipynb)
SHARED_DATA := ../shared/data/provision.py

.PHONY: venv data test figures weights benchmarks clean-notebooks

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

venv: $(VENV)/.installed

# Offline copy of the data sets, where this machine has one (see README, "Data").
data: venv
	@if [ -f $(SHARED_DATA) ]; then $(PY) $(SHARED_DATA) $${AML_DATA_DIR:-data}; \
	else echo "no $(SHARED_DATA): the loaders will download what they need"; fi

test: venv
	AML_PROFILE=smoke $(PY) -m pytest tests $(NOTEBOOKS) --nbval-lax --nbval-current-env --nbval-cell-timeout=900 -p no:cacheprovider

# Executes every notebook in the default profile (or AML_PROFILE=full); the committed notebooks stay
# without outputs: the executed copies go to a temporary folder, figures and metrics to figures/.
figures: venv
	@mkdir -p $${TMPDIR:-/tmp}/aml-executed
	for nb in $(NOTEBOOKS); do \
	  AML_PROFILE=$${AML_PROFILE:-default} $(VENV)/bin/jupyter nbconvert --to notebook --execute "$$nb" \
	    --ExecutePreprocessor.timeout=3600 --output-dir $${TMPDIR:-/tmp}/aml-executed || exit 1; \
	done
	$(PY) -m helpers.readme

# Retrains notebook 03's three VICReg models and rewrites data/weights/*_<profile>.pt (default: ~75 min on 2 cores).
weights: venv data
	AML_PROFILE=$${AML_PROFILE:-default} $(PY) -m helpers.vicreg_models --retrain

benchmarks: venv
	for b in benchmarks/*.py; do $(PY) "$$b" || exit 1; done

clean-notebooks: venv
	$(VENV)/bin/jupyter nbconvert --clear-output --inplace $(NOTEBOOKS)
