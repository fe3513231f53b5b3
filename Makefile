# locallm: the two commands a newcomer needs are `make run` and `make test`; `make install` puts
# the CLI, the header and the libraries under PREFIX.
# Everything else is CMake; this file only sequences set-up, build and test.
# make CUDA=1: the same with the CUDA backend (LM_CUDA, needs nvcc), in its own build folder
ifeq ($(CUDA),1)
BUILD      ?= build-cuda
CMAKE_EXTRA := -DLM_CUDA=ON
endif
BUILD      ?= build
CUDA_BUILD ?= build-cuda
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
ARM_BUILD  ?= build-arm
JOBS       ?= $(shell nproc 2>/dev/null || sysctl -n hw.ncpu 2>/dev/null || echo 2)
PROMPT     ?= Once upon a time
PREFIX     ?= /usr/local
CTEST_ARGS ?= --output-on-failure

.PHONY: all build cli install deps run test test-release test-asan test-tsan test-arm test-cuda-build clean fuzz fuzz-build fuzz-bundle check-fuzz testdata soak

FUZZ_BUILD   ?= build-fuzz
SOAK_SECONDS ?= 60
FUZZ_SECONDS ?= 30

all: build

deps:
	@bash scripts/deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_EXTRA)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

# Only the CLI (and the library it links), not the tests: what `make run` needs.
cli: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS) --target locallm

run: deps cli
	$(BUILD)/locallm run -p "$(PROMPT)"

# The header, liblocallm.a, liblocallm.so, locallm.pc, the CMake package, the CLI and the
# embedded models, under PREFIX (default /usr/local; e.g. make install PREFIX=$$HOME/.local).
install: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS) --target locallm locallm_lib locallm_shared
	cmake --install $(BUILD) --prefix "$(PREFIX)"

testdata:
	@bash scripts/testdata.sh

# Each suite runs through scripts/ctest.sh, which counts the tests that ran, passed, failed and
# were skipped (a skip fails under CI=true unless allow-listed there) into $(SUMMARY); the total
# is printed last.
SUMMARY := $(CURDIR)/build/test-summary.txt
export LM_TEST_SUMMARY := $(SUMMARY)

test: deps testdata
	@mkdir -p $(dir $(SUMMARY)) && rm -f $(SUMMARY)
	@$(MAKE) --no-print-directory test-release test-asan test-tsan test-arm test-cuda-build
	@cat $(SUMMARY)
	@awk -F'[ ,]+' '{r+=$$2; p+=$$4; f+=$$6; s+=$$8} END {printf "make test: %d ran in %d suites\ntotal: %d passed, %d failed, %d skipped\n", r, NR, p, f, s}' $(SUMMARY)

test-release: build
	bash scripts/ctest.sh $(BUILD) release $(CTEST_ARGS) -j $(JOBS)

test-asan:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLM_SANITIZE=ON
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	bash scripts/ctest.sh $(ASAN_BUILD) asan $(CTEST_ARGS) -j $(JOBS)

# Everything that runs threads, again under ThreadSanitizer: the pool, every model test (the
# forward pass runs on the pool), sessions (cancel from another thread), the server, providers,
# voice, hub downloads and convert, unit and end-to-end. Left out, because they start no thread:
# the parsers' tests and their fuzz replays, the allocation-failure sweep (one thread; minutes
# under TSan) and the tokenizer, template and catalog tests.
TSAN_EXCLUDE := ^(test_alloc_fail|test_tokenizer|test_tokenizer_json|test_jinja|test_chat|test_gguf|test_safetensors|test_hf_config|test_catalog|test_hub_cache|test_sample|fuzz_replay_.*)$$
test-tsan:
	CC=clang cmake -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLM_TSAN=ON
	cmake --build $(TSAN_BUILD) -j $(JOBS)
	bash scripts/ctest.sh $(TSAN_BUILD) tsan $(CTEST_ARGS) -j $(JOBS) -E '$(TSAN_EXCLUDE)'

# The CUDA backend built (so it cannot rot where no GPU runs it), the device formats checked on the
# host and the no-GPU path of device selection tested; its GPU tests are tests/cuda/run.sh. Only
# where nvcc is installed (deps.sh does not install CUDA).
NVCC := $(shell command -v nvcc 2>/dev/null || { [ -x /usr/local/cuda/bin/nvcc ] && echo /usr/local/cuda/bin/nvcc; })
test-cuda-build:
	@if [ -z "$(NVCC)" ]; then echo "test-cuda-build: no nvcc: the CUDA backend is not built here"; else \
	  cmake -S . -B $(CUDA_BUILD) -DCMAKE_BUILD_TYPE=Release -DLM_CUDA=ON -DCMAKE_CUDA_COMPILER=$(NVCC) >/dev/null && \
	  cmake --build $(CUDA_BUILD) -j $(JOBS) --target locallm lmcuda test_device test_cuda_formats && \
	  bash scripts/ctest.sh $(CUDA_BUILD) cuda $(CTEST_ARGS) -R '^(test_device|test_cuda_formats)$$'; fi

# The NEON kernels cross-built for aarch64 and run under qemu-aarch64, with and without dotprod,
# plus an aarch64 syntax check of every library source (SKIP without the cross tools).
test-arm:
	bash tests/arm/run.sh $(ARM_BUILD)

# libFuzzer runs of every target for FUZZ_SECONDS each, starting from the committed corpus
# (new inputs go to $(FUZZ_BUILD)/corpus-<target>, findings to $(FUZZ_BUILD)/artifacts-<target>,
# never into the repository). Prints the executions of each target; any finding fails the run.
FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/fuzz_*.c))

fuzz-build:
	CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLM_FUZZ=ON
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target $(FUZZ_TARGETS)

fuzz: deps testdata fuzz-build
	@fail=0; for n in $(FUZZ_TARGETS); do s=$${n#fuzz_}; log=$(FUZZ_BUILD)/fuzz-$$s.log; \
	  mkdir -p $(FUZZ_BUILD)/corpus-$$s $(FUZZ_BUILD)/artifacts-$$s; \
	  if ./$(FUZZ_BUILD)/$$n -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -timeout=10 -rss_limit_mb=4096 \
	      -print_final_stats=1 -artifact_prefix=$(FUZZ_BUILD)/artifacts-$$s/ \
	      $(FUZZ_BUILD)/corpus-$$s tests/fuzz/corpus/$$s >$$log 2>&1; then st=ok; else st=FAILED; fail=1; fi; \
	  ex=$$(sed -n 's/^stat::number_of_executed_units: *//p' $$log); \
	  printf '%-16s %12s executions in %s s: %s\n' $$s "$${ex:-?}" $(FUZZ_SECONDS) $$st; \
	  if [ $$st = FAILED ]; then grep -E 'ERROR|SUMMARY|runtime error|Test unit written' $$log | head -8; \
	    echo "  log: $$log"; fi; \
	  done; exit $$fail

# The fuzz binaries, their shared libraries, the corpora and run_long.sh in $(FUZZ_BUILD)/bundle,
# to run for hours on a bigger machine: bash run_long.sh bundle SECONDS.
fuzz-bundle: testdata fuzz-build
	bash tests/fuzz/bundle.sh $(FUZZ_BUILD)

# The server under SOAK_SECONDS of concurrent good, malformed, slow and vanishing clients
# (loopback); make test runs a 15 s one as the soak_server ctest.
soak: build
	python3 tests/soak/soak.py $(BUILD)/locallm models/tinychat --seconds $(SOAK_SECONDS)

check-fuzz:
	$(MAKE) fuzz FUZZ_SECONDS=30

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(FUZZ_BUILD) $(ARM_BUILD) $(CUDA_BUILD)
