# Set-up on a fresh machine with only Python 3 and pip: `make demo`, `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# CPU extras for development and CI; torch (when needed) is pinned to the local CPU build
# by constraints-cpu.txt, never left to pull CUDA wheels.
EXTRAS ?= plot,test,bench,torch,dask,notebooks,docs

.PHONY: demo test gpu-check docs lab bench bench-quick clean-cache clean

# torch's CPU build (constraints-cpu.txt pins `+cpu`): from the configured indexes when
# they hold it, else from PyTorch's CPU index; --no-deps, so only torch comes from there
# (PyPI's torch for Linux is the CUDA build, several GB with its nvidia-* wheels)
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu

$(STAMP): pyproject.toml constraints-cpu.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(if $(findstring torch,$(EXTRAS)),$(PY) -m pip install -q --no-deps -c constraints-cpu.txt torch 2>/dev/null \
	  || $(PY) -m pip install -q --no-deps -c constraints-cpu.txt --index-url $(TORCH_CPU_INDEX) torch)
	$(PY) -m pip install -q -c constraints-cpu.txt -e ".[$(EXTRAS)]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/gpu-targets demo

# second run: `make gpu-check` under numba's CUDA simulator (no GPU needed): the cuda
# engine's gpu-marked tests, the engine against reference, the torch device feed and the
# benchmark script, all on the lines a GPU runs, at tiny sizes
GPU_CHECK = PYTHONPATH=$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH} $(PY) benchmarks/gpu_check.py

# Every step runs even when an earlier one fails; the failed ones are listed at the end
# (the second step is `make gpu-check` under the simulator, called directly so that
# `make -n test` stays a dry run).
# pytest: progress dots from the start, a summary line for failures and errors only.
test: $(STAMP)
	@failed=""; \
	$(PY) -m pytest -q -rfE || failed="$$failed pytest"; \
	NUMBA_ENABLE_CUDASIM=1 $(GPU_CHECK) || failed="$$failed gpu-check(simulator)"; \
	$(PY) -m mkdocs build --strict -d site || failed="$$failed docs"; \
	if [ -n "$$failed" ]; then echo "make test: FAILED:$$failed"; exit 1; fi; echo "make test: all steps passed"

# The GPU proof (benchmarks/gpu_check.py; report in gpu-check-report.md). On a GPU
# machine whose python3 already has torch, CuPy and numba-cuda: `make gpu-check PY=python3`
# (no venv is made then); NUMBA_ENABLE_CUDASIM=1 runs the same steps tiny on a CPU.
GPU_CHECK_SETUP := $(if $(filter $(VENV)/bin/python,$(PY)),$(STAMP),)
gpu-check: $(GPU_CHECK_SETUP)
	$(GPU_CHECK)

# the MkDocs site (mkdocs.yml) into site/; --strict: a broken link, reference or stale
# generated page fails the build (`make test` runs it too)
docs: $(STAMP)
	$(PY) -m mkdocs build --strict -d site

# Jupyter on the notebooks (installs the jupyter extra on first use); start with
# 01_quickstart.ipynb, which plots targets on the real SDSJ data when ../shared is there
lab: $(STAMP)
	$(PY) -m pip install -q -c constraints-cpu.txt -e ".[$(EXTRAS),jupyter]"
	$(VENV)/bin/jupyter lab notebooks/01_quickstart.ipynb

bench: $(STAMP)
	$(PY) benchmarks/bench_cpu.py --users 2048 --markdown docs/benchmarks-cpu-latest.md

bench-quick: $(STAMP)
	$(PY) benchmarks/bench_cpu.py --quick

# Numba's on-disk cache of the kernels (keyed on every engine source by
# gpu_targets/kernel_cache.py, so an edit never loads stale code; this frees the space).
clean-cache:
	find gpu_targets -name '*.nbi' -delete -o -name '*.nbc' -delete

clean: clean-cache
	rm -rf $(VENV) .pytest_cache .hypothesis site
