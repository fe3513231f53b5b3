# locallm: the two commands a newcomer needs are `make run` and `make test`.
# Everything else is CMake; this file only sequences set-up, build and test.
BUILD      ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
JOBS       ?= $(shell nproc 2>/dev/null || sysctl -n hw.ncpu 2>/dev/null || echo 2)
PROMPT     ?= Once upon a time
CTEST_ARGS ?= --output-on-failure

.PHONY: all build deps run test test-release test-asan test-tsan clean fuzz check-fuzz testdata

all: build

deps:
	@bash scripts/deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

run: deps build
	./$(BUILD)/locallm run -p "$(PROMPT)"

testdata:
	@bash scripts/testdata.sh

test: deps testdata test-release test-asan test-tsan
	@echo "make test: all suites passed"

test-release: build
	cd $(BUILD) && ctest $(CTEST_ARGS) -j $(JOBS)

test-asan:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLM_SANITIZE=ON
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ctest $(CTEST_ARGS) -j $(JOBS)

# The thread pool and server tests again under ThreadSanitizer.
test-tsan:
	CC=clang cmake -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLM_TSAN=ON
	cmake --build $(TSAN_BUILD) -j $(JOBS) --target test_pool
	cd $(TSAN_BUILD) && ctest $(CTEST_ARGS) -R 'test_pool'

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD)
