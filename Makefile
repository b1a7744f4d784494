# rba_ros: two commands on a fresh machine (see README):
#   make demo   install everything into .venv and run the demo on the embedded default model
#   make test   install everything into .venv and run the test suite
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.rba-installed
PYTEST_ARGS ?=
# ROS here must never multicast off this machine (tests, demo, benchmarks; not the node itself).
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST

.PHONY: setup demo test test-all bench freeze clean

setup: $(STAMP)

$(STAMP): setup.py requirements/constraints.txt requirements/colcon.txt scripts/build_ros_msgs.sh \
  $(wildcard ros_interfaces/*/package.xml rba_core/ros_msgs/*/msg/*.msg)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade "pip>=24"
	$(PIP) install --quiet -c requirements/constraints.txt -e ".[ros,ros-build,dev,eval,train]"
	# colcon for the installed-layout test, apart: it needs setuptools<80 (requirements/colcon.txt)
	$(PIP) install --quiet --no-deps --upgrade --target $(VENV)/colcon -r requirements/colcon.txt
	bash scripts/build_ros_msgs.sh $(VENV)
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m rba_ros.demo --out out/demo

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

test-all: $(STAMP)
	$(PY) -m pytest --runslow $(PYTEST_ARGS)

bench: $(STAMP)
	for b in bench/*.py; do $(PY) $$b || exit 1; done

freeze:
	$(PY) -m pip freeze --exclude-editable | grep -v '^rba_ros' \
	  | sed '1i # Exact versions of everything the venv installs (pip constraint for make setup).' \
	  > requirements/constraints.txt

clean:
	rm -rf $(VENV) build out
