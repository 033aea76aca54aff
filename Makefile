# libmetaprompt — build, test, install.
# Targets: all (default), check, sanitize, valgrind, install, uninstall,
# installcheck, abicheck, abi-baseline, bindings-check, docs-check, examples, examples-check,
# demo, bench, clean.

VERSION_H := include/metaprompt/core.h
MAJOR := $(shell sed -n 's/^\#define MP_VERSION_MAJOR \([0-9]*\).*/\1/p' $(VERSION_H))
MINOR := $(shell sed -n 's/^\#define MP_VERSION_MINOR \([0-9]*\).*/\1/p' $(VERSION_H))
PATCH := $(shell sed -n 's/^\#define MP_VERSION_PATCH \([0-9]*\).*/\1/p' $(VERSION_H))
VERSION := $(MAJOR).$(MINOR).$(PATCH)

PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
DESTDIR ?=

CC ?= cc
PKG_CONFIG ?= pkg-config
# Build directory: lib/ for the normal build, lib/asan for the sanitizer run.
BUILD ?= lib
OPT ?= -O2
# WERROR=1 turns warnings into errors (CI sets it).
WERROR ?=
SANFLAGS ?=

DEPS_CFLAGS := $(shell $(PKG_CONFIG) --cflags openblas zlib)
DEPS_LIBS := $(shell $(PKG_CONFIG) --libs openblas zlib) -lm -lpthread
CHECK_CFLAGS := $(shell $(PKG_CONFIG) --cflags check)
CHECK_LIBS := $(shell $(PKG_CONFIG) --libs check)

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes $(if $(filter 1,$(WERROR)),-Werror)
BASE_CFLAGS := -std=c11 -g $(OPT) $(WARN) $(SANFLAGS) -D_POSIX_C_SOURCE=200809L -Iinclude -Isrc $(DEPS_CFLAGS)
LIB_CFLAGS := $(BASE_CFLAGS) -fPIC -fvisibility=hidden
override CFLAGS_ALL = $(LIB_CFLAGS) $(CFLAGS)

SRC := $(sort $(wildcard src/*/*.c))
OBJ := $(patsubst src/%.c,$(BUILD)/obj/%.o,$(SRC))
HDR := include/metaprompt.h $(wildcard include/metaprompt/*.h) $(wildcard src/*/*.h)
EXPORTS := $(sort $(wildcard src/*/exports.txt))

STATIC := $(BUILD)/libmetaprompt.a
SHARED_REAL := $(BUILD)/libmetaprompt.so.$(VERSION)
SHARED_MAJOR := $(BUILD)/libmetaprompt.so.$(MAJOR)
SHARED := $(BUILD)/libmetaprompt.so
MAP := $(BUILD)/metaprompt.map
PC := $(BUILD)/metaprompt.pc
PC_UNINSTALLED := $(BUILD)/metaprompt-uninstalled.pc

TEST_SRC := $(sort $(wildcard tests/*.c))
TEST_BIN := $(BUILD)/tests/check_runner
TEST_CFLAGS := $(BASE_CFLAGS) $(CHECK_CFLAGS) -Itests -DMP_SOURCE_DIR='"$(CURDIR)"' -DMP_BUILD_DIR='"$(CURDIR)/$(BUILD)"' -Wno-missing-prototypes

.PHONY: all check check-build sanitize valgrind install uninstall installcheck abicheck \
        abi-baseline bindings-check docs docs-check fuzz fuzz-build examples examples-check demo bench clean
.DELETE_ON_ERROR:

all: $(STATIC) $(SHARED) $(PC) $(PC_UNINSTALLED)

$(BUILD)/obj/%.o: src/%.c $(HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

# The tape's element-wise kernels are plain loops over float arrays: let the
# compiler vectorize them with its full cost model (GCC's -O2 only takes loops
# that need no epilogue). -fno-trapping-math lets it if-convert the selects
# in src/tape/fastmath.h; it changes no result (the library never reads FP
# exception flags).
CC_IS_CLANG := $(shell $(CC) --version 2>/dev/null | grep -c clang)
TAPE_VEC := $(if $(filter -O0,$(OPT)),,$(if $(filter 0,$(CC_IS_CLANG)),-fvect-cost-model=dynamic) -ftree-vectorize -fno-trapping-math)
$(BUILD)/obj/tape/%.o: src/tape/%.c $(HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(TAPE_VEC) -c $< -o $@

$(STATIC): $(OBJ)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $(OBJ)

# The version map is generated from per-module lists of exported names
# (src/*/exports.txt); the symbol test checks it against the headers and nm.
$(MAP): $(EXPORTS) Makefile
	@mkdir -p $(dir $@)
	{ printf 'METAPROMPT_%s {\n  global:\n' $(MAJOR); \
	  cat $(EXPORTS) | sed -e 's/#.*//' -e '/^[[:space:]]*$$/d' -e 's/^[[:space:]]*/    /' -e 's/[[:space:]]*$$/;/'; \
	  printf '  local:\n    *;\n};\n'; } > $@

$(SHARED_REAL): $(OBJ) $(MAP)
	$(CC) -shared $(SANFLAGS) -o $@ $(OBJ) -Wl,-soname,libmetaprompt.so.$(MAJOR) \
	  -Wl,--version-script=$(MAP) -Wl,-z,defs -Wl,-z,noexecstack -Wl,-z,relro -Wl,-z,now $(DEPS_LIBS)

$(SHARED_MAJOR): $(SHARED_REAL)
	ln -sf $(notdir $<) $@
$(SHARED): $(SHARED_MAJOR)
	ln -sf $(notdir $<) $@

# pkg-config files. $(PC) is the one install writes, with the install-time
# paths (PREFIX, LIBDIR, INCLUDEDIR), previewed in the build directory: it
# does not point into the build tree. $(PC_UNINSTALLED) is for building
# against the build tree without installing: absolute paths of include/ and
# $(BUILD)/. pkg-config and pkgconf prefer NAME-uninstalled.pc to NAME.pc in
# the same directory, so `PKG_CONFIG_PATH=$(BUILD) pkg-config --cflags --libs
# metaprompt` gives the build tree (docs/GUIDE.md, "Building against
# libmetaprompt"). install never copies it.
PC_SED = sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' \
	    -e 's|@VERSION@|$(VERSION)|g'
PC_SED_UNINSTALLED = sed -e 's|@PREFIX@|$(CURDIR)|g' -e 's|@LIBDIR@|$(CURDIR)/$(BUILD)|g' \
	    -e 's|@INCLUDEDIR@|$(CURDIR)/include|g' -e 's|@VERSION@|$(VERSION)|g'
$(PC): src/metaprompt.pc.in $(VERSION_H) Makefile
	@mkdir -p $(dir $@)
	$(PC_SED) $< > $@
$(PC_UNINSTALLED): src/metaprompt.pc.in $(VERSION_H) Makefile
	@mkdir -p $(dir $@)
	$(PC_SED_UNINSTALLED) $< > $@

# ---- tests -----------------------------------------------------------------
$(TEST_BIN): $(TEST_SRC) $(wildcard tests/*.h) $(STATIC) $(SHARED)
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) $(CFLAGS) $(TEST_SRC) -o $@ $(STATIC) $(CHECK_LIBS) $(DEPS_LIBS)

check-build: all $(TEST_BIN)

# One Check runner in fork mode, OpenBLAS single-threaded. SUITES= limits
# the run to some suites (e.g. make check SUITES="core tape").
check: check-build
	OPENBLAS_NUM_THREADS=1 CK_FORK=yes $(TEST_BIN) $(SUITES)

# The whole suite under AddressSanitizer + UndefinedBehaviorSanitizer.
sanitize:
	$(MAKE) BUILD=lib/asan OPT=-O1 SANFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" check-build
	OPENBLAS_NUM_THREADS=1 CK_FORK=no ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  lib/asan/tests/check_runner $(SUITES)

# A subset under valgrind memcheck (no fork, so leaks are seen). The runner
# re-executing itself (the model tests' fresh-process checkpoint load) is
# traced too, so its errors fail the test through the exit code; system
# tools run by the tests (sh, rm, nm, ...) are not. The tape suites (about
# 3 minutes) run without the AVX-512 kernels, which valgrind's CPU lacks;
# names (a few seconds: every function given handles of the wrong kind,
# destroy functions included) too; data and meta run under the sanitizers
# only.
VALGRIND_SUITES ?= core model tape tape_fused names
valgrind: check-build
	OPENBLAS_NUM_THREADS=1 CK_FORK=no valgrind --error-exitcode=99 --leak-check=full \
	  --errors-for-leak-kinds=definite --track-origins=yes --quiet \
	  --trace-children=yes --trace-children-skip='/bin/*,/usr/bin/*,/usr/sbin/*' \
	  $(TEST_BIN) $(VALGRIND_SUITES)

# ---- install -----------------------------------------------------------------
# A plain install by root (DESTDIR empty) refreshes the dynamic loader's cache
# with $(LDCONFIG), so that programs linked against the shared library start
# at once (its failure is reported, not fatal); otherwise, or with LDCONFIG
# empty (the scratch installs of the checks), it prints a one-line hint.
LDCONFIG ?= ldconfig
install: all
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR)/metaprompt $(DESTDIR)$(PKGCONFIGDIR)
	install -m 644 $(STATIC) $(DESTDIR)$(LIBDIR)/libmetaprompt.a
	install -m 755 $(SHARED_REAL) $(DESTDIR)$(LIBDIR)/libmetaprompt.so.$(VERSION)
	ln -sf libmetaprompt.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libmetaprompt.so.$(MAJOR)
	ln -sf libmetaprompt.so.$(MAJOR) $(DESTDIR)$(LIBDIR)/libmetaprompt.so
	install -m 644 include/metaprompt.h $(DESTDIR)$(INCLUDEDIR)/metaprompt.h
	install -m 644 include/metaprompt/*.h $(DESTDIR)$(INCLUDEDIR)/metaprompt/
	$(PC_SED) src/metaprompt.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/metaprompt.pc
	chmod 644 $(DESTDIR)$(PKGCONFIGDIR)/metaprompt.pc
	@ldc='$(LDCONFIG)'; if [ -z "$(DESTDIR)" ] && [ -n "$$ldc" ] && [ "$$(id -u)" = 0 ]; then \
	  echo "$$ldc"; \
	  $$ldc || echo "install: '$$ldc' failed; run it before starting programs linked against libmetaprompt.so.$(MAJOR)"; \
	  { ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null; } | grep -qF "$(LIBDIR)/libmetaprompt.so.$(MAJOR)" || \
	    echo "install: $(LIBDIR) is not on the loader's search path: set LD_LIBRARY_PATH=$(LIBDIR) (or add it to /etc/ld.so.conf.d and run ldconfig) so that programs find libmetaprompt.so.$(MAJOR)"; \
	else \
	  echo "install: run 'ldconfig' as root (or set LD_LIBRARY_PATH=$(LIBDIR)) so that programs find libmetaprompt.so.$(MAJOR)"; \
	fi

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/libmetaprompt.a $(DESTDIR)$(LIBDIR)/libmetaprompt.so \
	  $(DESTDIR)$(LIBDIR)/libmetaprompt.so.$(MAJOR) $(DESTDIR)$(LIBDIR)/libmetaprompt.so.$(VERSION) \
	  $(DESTDIR)$(INCLUDEDIR)/metaprompt.h $(DESTDIR)$(PKGCONFIGDIR)/metaprompt.pc
	rm -f $(addprefix $(DESTDIR)$(INCLUDEDIR)/metaprompt/,$(notdir $(wildcard include/metaprompt/*.h)))
	-rmdir $(DESTDIR)$(INCLUDEDIR)/metaprompt 2>/dev/null

# Installs into a scratch prefix, then builds and runs a program against it
# with pkg-config alone, linked shared and linked static.
installcheck:
	tools/installcheck.sh

# ---- ABI -----------------------------------------------------------------------
ABI_BASELINE := tests/abi/libmetaprompt.abi
abi-baseline: all
	@mkdir -p $(dir $(ABI_BASELINE))
	abidw --no-corpus-path --headers-dir include --out-file $(ABI_BASELINE) $(SHARED_REAL)

abicheck: all
	tools/abicheck.sh $(ABI_BASELINE) $(SHARED_REAL)

# ---- language bindings ---------------------------------------------------------
# Python (ctypes) tests under Debian's interpreter and the Rust crate's tests,
# both against the library in $(BUILD)/, then the Rust sinusoid example with
# a few iterations. Cargo builds under $(BUILD)/cargo so nothing is written
# into examples/rust/. CARGO, RUSTC and RUSTDOC choose the Rust toolchain
# (CI: Debian's /usr/bin/cargo, /usr/bin/rustc and /usr/bin/rustdoc, i.e.
# Rust 1.63 on bookworm, even when another toolchain is first on PATH);
# RUSTC and RUSTDOC empty: cargo's own choice.
PYTHON ?= /usr/bin/python3
CARGO ?= cargo
RUSTC ?=
RUSTDOC ?=
RUST_ENV := $(if $(RUSTC),RUSTC=$(RUSTC)) $(if $(RUSTDOC),RUSTDOC=$(RUSTDOC))
bindings-check: all $(BUILD)/examples/sinusoid
	cd examples/python && PYTHONDONTWRITEBYTECODE=1 OPENBLAS_NUM_THREADS=1 MP_LIBRARY_PATH= \
	  $(PYTHON) -m pytest -q -p no:cacheprovider tests
	@if [ -f examples/rust/Cargo.toml ]; then \
	  set -e; \
	  $(CARGO) --version; $(or $(RUSTC),rustc) --version; \
	  echo "CARGO_TARGET_DIR=$(BUILD)/cargo $(RUST_ENV) $(CARGO) test --offline"; \
	  env $(RUST_ENV) CARGO_TARGET_DIR=$(CURDIR)/$(BUILD)/cargo MP_LIB_DIR=$(CURDIR)/$(BUILD) \
	    OPENBLAS_NUM_THREADS=1 $(CARGO) test --offline --manifest-path examples/rust/Cargo.toml; \
	  echo "$(RUST_ENV) $(CARGO) run --example sinusoid 20"; \
	  env $(RUST_ENV) CARGO_TARGET_DIR=$(CURDIR)/$(BUILD)/cargo MP_LIB_DIR=$(CURDIR)/$(BUILD) \
	    OPENBLAS_NUM_THREADS=1 $(CARGO) run -q --offline --manifest-path examples/rust/Cargo.toml \
	    --example sinusoid 20; \
	  echo "a dependent crate's binary, rpath from DEP_METAPROMPT_LIBDIR, run without LD_LIBRARY_PATH"; \
	  env $(RUST_ENV) CARGO_TARGET_DIR=$(CURDIR)/$(BUILD)/cargo MP_LIB_DIR=$(CURDIR)/$(BUILD) \
	    $(CARGO) build -q --offline --manifest-path examples/rust/dependent/Cargo.toml; \
	  env -u LD_LIBRARY_PATH OPENBLAS_NUM_THREADS=1 $(CURDIR)/$(BUILD)/cargo/debug/metaprompt-dependent-check; \
	  env $(RUST_ENV) CARGO="$(CARGO)" BUILD=$(BUILD) tools/bindings-installcheck.sh; \
	fi

# ---- documentation -------------------------------------------------------------
# docs/API.md is generated from the header comments; docs-check fails when a
# public function has no doc comment or the file is stale.
DOCS_PYTHON ?= python3
docs:
	$(DOCS_PYTHON) tools/gen_api_docs.py
docs-check:
	$(DOCS_PYTHON) tools/gen_api_docs.py --check

# ---- fuzzing ------------------------------------------------------------------
# Every tests/fuzz/fuzz_*.c is a libFuzzer harness (LLVMFuzzerTestOneInput)
# built with clang against all library sources under ASan + UBSan, then run
# for FUZZ_SECONDS each. Seeds in tests/fuzz/corpus/<name>/ are used when
# present; new inputs go to lib/fuzz/corpus/<name>/ (not committed).
FUZZ_SECONDS ?= 30
FUZZ_CC ?= clang
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BIN := $(patsubst tests/fuzz/%.c,lib/fuzz/%,$(FUZZ_SRC))
FUZZ_CFLAGS := -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -D_POSIX_C_SOURCE=200809L -Iinclude -Isrc $(DEPS_CFLAGS)
lib/fuzz/%: tests/fuzz/%.c $(SRC) $(HDR)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $< $(SRC) -o $@ $(DEPS_LIBS)
fuzz-build: $(FUZZ_BIN)
fuzz: fuzz-build
	@set -e; for b in $(FUZZ_BIN); do n=$$(basename $$b); mkdir -p lib/fuzz/corpus/$$n; \
	  seeds=; if [ -d tests/fuzz/corpus/$$n ]; then seeds=tests/fuzz/corpus/$$n; fi; \
	  echo "fuzz $$n for $(FUZZ_SECONDS) s"; \
	  if OPENBLAS_NUM_THREADS=1 $$b -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 \
	       -print_final_stats=1 -artifact_prefix=lib/fuzz/$$n- lib/fuzz/corpus/$$n $$seeds \
	       > lib/fuzz/$$n.log 2>&1; then tail -n 3 lib/fuzz/$$n.log; \
	  else tail -n 60 lib/fuzz/$$n.log; echo "fuzz $$n FAILED (artifact in lib/fuzz/)"; exit 1; fi; done

# ---- examples, demo, benchmarks ------------------------------------------------
EXAMPLE_SRC := $(sort $(wildcard examples/*.c))
EXAMPLE_BIN := $(patsubst examples/%.c,$(BUILD)/examples/%,$(EXAMPLE_SRC))
$(BUILD)/examples/%: examples/%.c examples/example_util.h $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) $< -o $@ $(STATIC) $(DEPS_LIBS)
examples: $(EXAMPLE_BIN)

# Every example program run with short settings (CI): each exits non-zero
# on any failed library call. OMNIGLOT_DIR is the Omniglot IDX folder.
OMNIGLOT_DIR ?= ../shared/data/omniglot
examples-check: examples
	@mkdir -p $(BUILD)/examples-check
	OPENBLAS_NUM_THREADS=1 $(BUILD)/examples/sinusoid 20
	OPENBLAS_NUM_THREADS=1 $(BUILD)/examples/fashion_demo --quick --out $(BUILD)/examples-check/fashion
	OPENBLAS_NUM_THREADS=1 $(BUILD)/examples/omniglot --quick --data $(OMNIGLOT_DIR) \
	  --out $(BUILD)/examples-check/omniglot

# The main job: meta-learned prompts on Fashion-MNIST (Debian's
# dataset-fashion-mnist). Our two worker threads run OpenBLAS single-threaded
# so that the two cores are not oversubscribed. DEMO_ARGS passes flags
# (e.g. DEMO_ARGS="--quick" or "--iters 3000 --episodes 2000").
DEMO_ARGS ?=
demo: $(BUILD)/examples/fashion_demo
	OPENBLAS_NUM_THREADS=1 $(BUILD)/examples/fashion_demo $(DEMO_ARGS)

# Every examples/bench_*.c is built and run; each prints `bench <name>
# <value> <unit>` lines with PyTorch figures from the same run. BENCH_ARGS
# is passed to each (e.g. BENCH_ARGS="--iters 20000" for bench_meta).
BENCH_SRC := $(sort $(wildcard examples/bench_*.c))
BENCH_BIN := $(patsubst examples/%.c,$(BUILD)/bench/%,$(BENCH_SRC))
$(BUILD)/bench/%: examples/%.c $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) -DMP_SOURCE_DIR='"$(CURDIR)"' $(CFLAGS) $< -o $@ $(STATIC) $(DEPS_LIBS)
bench: all $(BENCH_BIN)
	@set -e; for b in $(BENCH_BIN); do echo "== $$b"; OPENBLAS_NUM_THREADS=1 $$b $(BENCH_ARGS); done

clean:
	rm -rf lib
