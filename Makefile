# pyalloc + pycontain. `make demo` and `make test` work on a fresh Debian machine as root.
PY ?= python3
CC ?= cc
CORE := csrc/core/arena.c csrc/core/freeindex.c csrc/core/pool.c csrc/core/slab.c
HDRS := $(wildcard csrc/core/*.h)
BIN := csrc/tests/bin
WARN := -Wall -Wextra -Werror
SAN := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
# System packages the tests use (installed when missing, if we are root with apt).
APT_PACKAGES := gcc make valgrind git sqlite3 busybox-static runc umoci skopeo zstd podman containerd libseccomp2 uidmap python3-cffi-backend slirp4netns containernetworking-plugins iproute2 iptables docker-registry apache2-utils openssl
APT_BENCH_PACKAGES := libjemalloc2 libmimalloc2.0 libtcmalloc-minimal4 runc
PIP_PACKAGES := "cffi>=1.15" setuptools wheel "pytest>=7" hypothesis pytest-benchmark pytest-timeout ruff numpy
PYTEST_ARGS ?=

.PHONY: all setup deps build demo test ctest pytest pytest-asan lint bench bench-deps bench-suite bench-compare clean

all: build

setup: deps build

deps:
	@scripts/ensure-apt $(APT_PACKAGES)
	@$(PY) -m pip install -q --disable-pip-version-check --root-user-action=ignore $(PIP_PACKAGES)

# In place, plus an editable install in "compat" mode (a plain path entry: no import hook to
# slow every interpreter start) for the `pyalloc` and `pycontain` commands; bytecode compiled
# ahead so that a CLI start does not compile (PYTHONDONTWRITEBYTECODE may be set); the
# pycontain and pycontain-oci scripts rewritten to start the interpreter with -I -S
# (pycontain/launcher.py: no site, no .pth hooks).
build:
	rm -f pyalloc/_native.cpython-*.so pycontain/runtime/_sys_native.cpython-*.so  # would shadow abi3 builds
	$(PY) setup.py -q build_ext --inplace
	$(PY) -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-build-isolation --no-deps --config-settings editable_mode=compat -e .
	$(PY) -m compileall -q pyalloc pycontain
	$(PY) -m pycontain.launcher -q

demo: setup
	$(PY) -m pyalloc.demo

test: setup lint ctest pytest-asan pytest

lint:
	$(PY) -m ruff check $(wildcard pyalloc pycontain tests bench examples)

# C-level tests: API edge cases and the threaded stress test under ASan+UBSan, and the
# stress test under valgrind.
ctest: $(BIN)/stress-asan $(BIN)/stress $(BIN)/test_api-asan
	$(BIN)/test_api-asan
	$(BIN)/stress-asan 20000
	valgrind -q --error-exitcode=1 --leak-check=full $(BIN)/stress 4000

$(BIN)/stress-asan: csrc/tests/stress.c $(CORE) $(HDRS)
	@mkdir -p $(BIN)
	$(CC) -std=gnu11 -g -O1 $(WARN) $(SAN) -Icsrc/core -o $@ csrc/tests/stress.c $(CORE) -pthread

$(BIN)/test_api-asan: csrc/tests/test_api.c $(CORE) $(HDRS)
	@mkdir -p $(BIN)
	$(CC) -std=gnu11 -g -O1 $(WARN) $(SAN) -Icsrc/core -o $@ csrc/tests/test_api.c $(CORE) -pthread

$(BIN)/stress: csrc/tests/stress.c $(CORE) $(HDRS)
	@mkdir -p $(BIN)
	$(CC) -std=gnu11 -g -O2 $(WARN) -Icsrc/core -o $@ csrc/tests/stress.c $(CORE) -pthread

pytest:
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The pool's CPython extension (pyalloc._pool) built with ASan+UBSan, and the Python API's
# tests run against that build, in a copy of the package outside the tree.
ASAN_PY := $(or $(TMPDIR),/tmp)/pyalloc-asan-$(shell id -u)
PY_INCLUDE = $(shell $(PY) -c "import sysconfig; print(sysconfig.get_paths()['include'])")
PY_EXT = $(shell $(PY) -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
POOL_TESTS := tests/__init__.py tests/model.py tests/test_pool_api.py tests/test_pool_batch.py tests/test_pool_model.py
pytest-asan:
	rm -rf $(ASAN_PY) && mkdir -p $(ASAN_PY)/pyalloc $(ASAN_PY)/tests
	cp pyalloc/*.py pyalloc/_native*.so $(ASAN_PY)/pyalloc/
	cp $(POOL_TESTS) $(ASAN_PY)/tests/
	$(CC) -std=gnu11 -g -O1 $(WARN) $(SAN) -fno-strict-aliasing -fPIC -shared -I$(PY_INCLUDE) -Icsrc/core -o $(ASAN_PY)/pyalloc/_pool$(PY_EXT) csrc/python/poolmodule.c $(CORE)
	cd $(ASAN_PY) && LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" ASAN_OPTIONS=detect_leaks=0 $(PY) -c "import pyalloc._pool as m, sys; sys.exit(0 if m.__file__.startswith('$(ASAN_PY)') else 'not the ASan build')"
	cd $(ASAN_PY) && LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" ASAN_OPTIONS=detect_leaks=0 $(PY) -m pytest -q -p no:cacheprovider -p no:randomly tests
	rm -rf $(ASAN_PY)

# Benchmarks: peers from Debian, matplotlib for the plots; results in docs/BENCHMARKS.md.
BENCH_JSON := .benchmarks/latest.json
BENCH_ARGS ?=

bench-deps:
	@scripts/ensure-apt $(APT_BENCH_PACKAGES)
	@$(PY) -m pip install -q --disable-pip-version-check --root-user-action=ignore matplotlib

bench: setup bench-deps
	@mkdir -p .benchmarks
	$(PY) -m pytest bench -q --benchmark-only --benchmark-autosave --benchmark-json=$(BENCH_JSON) $(BENCH_ARGS)
	$(PY) bench/fragmentation.py
	@if [ -n "$(MIMALLOC_BENCH)" ]; then $(MAKE) --no-print-directory bench-suite; fi
	$(PY) bench/report.py $(BENCH_JSON) --out docs/BENCHMARKS.md --command "make bench"
	$(PY) bench/report.py $(BENCH_JSON) --scaling-into docs/pool.md

# The public allocator suite (daanx/mimalloc-bench), built outside this repository (see the
# docstring of bench/mbench.py): `make bench-suite MIMALLOC_BENCH=/path/to/its/cmake/out`.
# `make bench` runs it too when MIMALLOC_BENCH is set.
MIMALLOC_BENCH ?=
MBENCH_ARGS ?= --rounds 3 --threads 2
bench-suite: setup bench-deps
	@test -n "$(MIMALLOC_BENCH)" || { echo "bench-suite: set MIMALLOC_BENCH to the suite's cmake build directory" >&2; exit 2; }
	$(PY) bench/mbench.py --suite $(MIMALLOC_BENCH) $(MBENCH_ARGS) --variant 'pyalloc-notc:PYALLOC_TCACHE=0' --variant 'pyalloc-secure:PYALLOC_SECURE=1' --json .benchmarks/mbench.json --markdown docs/mbench.md
	$(PY) bench/mbench.py --suite $(MIMALLOC_BENCH) --security --security-runs 3 --variant 'pyalloc-notc:PYALLOC_TCACHE=0' --variant 'pyalloc-secure:PYALLOC_SECURE=1' --json .benchmarks/mbench-security.json --markdown docs/mbench-security.md

# Regression guard: compares a new run with the last saved one (make bench saves each run)
# and fails when a median got more than BENCH_FAIL worse.
BENCH_FAIL ?= median:25%
bench-compare: setup
	$(PY) -m pytest bench -q --benchmark-only --benchmark-compare --benchmark-compare-fail=$(BENCH_FAIL) $(BENCH_ARGS)

clean:
	rm -rf build $(BIN) *.egg-info pyalloc/*.so pyalloc/_native.c pycontain/runtime/*.so pycontain/runtime/_sys_native.c pyalloc/*.o
