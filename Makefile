# Thin wrapper over meson. `make test` and `make demo` work on a fresh Debian 12
# machine as root: they install what they need first (scripts/install-deps).
BUILD      ?= build
ASAN_BUILD ?= build-asan
MESON_OPTS ?= -Dfault_seams=true --werror

FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60

.PHONY: all deps build test unit integration asan fuzz valgrind demo bench clean

all: build

deps:
	scripts/install-deps

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_OPTS)

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

test: build
	meson test -C $(BUILD) --print-errorlogs --num-processes 2

unit: build
	meson test -C $(BUILD) --print-errorlogs --suite unit

integration: build
	meson test -C $(BUILD) --print-errorlogs --suite integration

$(ASAN_BUILD)/build.ninja:
	CC=clang meson setup $(ASAN_BUILD) $(MESON_OPTS) -Db_sanitize=address,undefined -Db_lundef=false

# Every test suite again under AddressSanitizer and UBSan (clang).
asan: deps $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD)
	SLUICE_SANITIZED=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  meson test -C $(ASAN_BUILD) --print-errorlogs --num-processes 2 --timeout-multiplier 3

$(FUZZ_BUILD)/build.ninja:
	CC=clang meson setup $(FUZZ_BUILD) $(MESON_OPTS) -Dfuzz=true -Db_sanitize=address,undefined \
	  -Db_lundef=false -Dc_args=-fsanitize=fuzzer-no-link

# The libFuzzer targets (tests/fuzz/fuzz_*.c), FUZZ_SECONDS each, over a scratch copy
# of their checked-in corpus; any crash, leak, UB or timeout fails. The library code is
# built with -fsanitize=fuzzer-no-link so coverage guides the fuzzer through it too.
fuzz: deps $(FUZZ_BUILD)/build.ninja
	ninja -C $(FUZZ_BUILD)
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/run-fuzz $(FUZZ_BUILD)

# The unit suite under valgrind memcheck (tests/meson.build: test setup 'valgrind').
valgrind: build
	meson test -C $(BUILD) --print-errorlogs --setup valgrind --suite unit

demo: build
	scripts/demo $(BUILD)

bench: build
	bench/run-route.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
