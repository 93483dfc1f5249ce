# glmpipe — GNU make build.
#
#   make            CPU build of every binary into build/bin (-O2 -Wall -Wextra -Werror)
#   make test       build, then run every test; ends with "N passed, N failed"
#   make asan       the same binaries with AddressSanitizer + UBSan, into build-asan/
#   make asan-test  run the test suite against the asan build
#   make run        build, create the embedded default model, serve it on 127.0.0.1:8000 (glm-serve)
#   make install    binaries to $(PREFIX)/bin, systemd units, /etc/glmpipe/glmpipe.env (docs/deploy.md)
#   make bench      benchmarks against their references (tests/bench/*.sh); numbers go to docs/perf.md
#   make bench-peer glm-engine against llama.cpp, side by side (tools/bench-peer; downloads llama.cpp)
#   make fuzz       the wire-protocol fuzzer against every stage for FUZZ_SECONDS (default 60);
#                   FUZZ_BUILD=build-asan runs it on the sanitizer build (docs/reliability.md)
#   make fuzz-libfuzzer  clang libFuzzer targets (tests/fuzz/fuzz_*.c), FUZZ_SECONDS in all
#
# Layout: common/*.c -> libglmcommon.a (the small plumbing every stage shares);
# lib/NAME/*.c -> libglmNAME.a, one library used by several stages per folder
# (lib/jinja, lib/tokenizer), each with one public header included as
# "NAME/NAME.h". Every binary glm-X has a folder; all .c files in that folder
# except main.c form lib<folder>.a (so unit tests can link a stage's logic),
# main.c adds main(). Arrows point one way: stages -> lib/* -> common. CUDA sources (*.cu) are compiled only
# when nvcc is present and are never needed by the CPU build.

BUILD   ?= build
CC      ?= cc
PKGS    := libzmq msgpack libcjson libuv libpcre2-8 libutf8proc libsystemd
# Debian's libhttp-parser-dev ships no .pc file: its flags are spelled out.
NOPC_LIBS := -lhttp_parser
OPT     ?= -O2
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wno-unused-parameter \
               -g $(OPT) -pthread -I. -Icommon -Ilib $(shell pkg-config --cflags $(PKGS))
CFLAGS  += $(CFLAGS_BASE) $(EXTRA_CFLAGS)
LDLIBS  += $(shell pkg-config --libs $(PKGS)) $(NOPC_LIBS) -lm -pthread $(EXTRA_LDFLAGS)

# ---- CUDA backend (engine/cuda/*.cu, docs/engine.md "Backends"): built by
# nvcc whenever nvcc is found (CUDA=0 forces a CPU-only build; the sanitizer
# build uses it). sm_90a (wgmma/TMA-capable Hopper code) plus compute_90 PTX
# that newer cards JIT. The runtime is linked statically (cudart_static):
# binaries run on machines without a driver and find no device there.
NVCC      ?= $(firstword $(shell command -v nvcc 2>/dev/null) $(wildcard /usr/local/cuda/bin/nvcc))
CUDA      ?= $(if $(NVCC),1,0)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CUDA_GENCODE := -gencode arch=compute_90a,code=sm_90a -gencode arch=compute_90,code=compute_90
NVCCFLAGS ?= -O2 -g -std=c++17 $(CUDA_GENCODE) -Werror all-warnings \
             -Xcompiler -Wall,-Wextra,-Wno-unused-parameter -I. -Icommon -Ilib
# The NCCL communicator (engine/cuda/comm_nccl.cu) needs nccl.h beside the
# toolkit (or in /usr/include); libnccl itself is opened at run time, never
# linked. Without the header, or without nvcc, nccl_none.c stands in.
CUDA_SRC  := $(wildcard engine/cuda/*.cu)
NCCL_H    ?= $(firstword $(wildcard $(CUDA_HOME)/include/nccl.h /usr/include/nccl.h /usr/local/include/nccl.h))
ifeq ($(CUDA),1)
ifeq ($(NCCL_H),)
CUDA_SRC  := $(filter-out engine/cuda/comm_nccl.cu,$(CUDA_SRC))
CUDA_OBJ  := $(CUDA_SRC:%.cu=$(BUILD)/obj/%.cu.o) $(BUILD)/obj/engine/cuda/nccl_none.o
else
CUDA_OBJ  := $(CUDA_SRC:%.cu=$(BUILD)/obj/%.cu.o)
NVCCFLAGS += -I$(dir $(NCCL_H))
endif
LDLIBS    += -L$(CUDA_HOME)/lib64 -lcudart_static -ldl -lrt -lstdc++
else
CUDA_OBJ  := $(BUILD)/obj/engine/cuda/none.o $(BUILD)/obj/engine/cuda/nccl_none.o
endif

# binary name -> folder
BIN_DIRS := glm-msg:tools/msg glm-tokenize:tokenize glm-detok:detok \
            glm-parse-reasoning:parse-reasoning glm-parse-tools:parse-tools \
            glm-replay:tools/replay glm-engine:engine glm-mkmodel:tools/mkmodel \
            glm-gateway:gateway glm-serve:tools/serve glm-engine-bench:tools/engbench \
            glm-bench:tools/bench

# Only folders that exist and have a main.c produce a binary.
present  = $(foreach p,$(BIN_DIRS),$(if $(wildcard $(word 2,$(subst :, ,$(p)))/main.c),$(p)))
BINS    := $(foreach p,$(present),$(BUILD)/bin/$(word 1,$(subst :, ,$(p))))
DIRS    := $(foreach p,$(present),$(word 2,$(subst :, ,$(p))))

COMMON_SRC := $(wildcard common/*.c)
COMMON_OBJ := $(COMMON_SRC:%.c=$(BUILD)/obj/%.o)
COMMON_LIB := $(BUILD)/lib/libglmcommon.a

# Shared libraries of their own (lib/NAME -> libglmNAME.a), listed so that a
# library comes before the ones it uses: the linker resolves left to right.
SHARED_LIBS := $(foreach d,$(wildcard lib/*),$(BUILD)/lib/libglm$(notdir $(d)).a)
# The libglm%.a rule finds its sources with $$(wildcard lib/$$*/...): second
# expansion. In it a literal % would be taken for the stem, hence pc/po.
.SECONDEXPANSION:
pc := %.c
po := %.o

libname  = $(BUILD)/lib/lib$(subst /,-,$(1)).a
dirsrc   = $(filter-out $(1)/main.c,$(wildcard $(1)/*.c) $(wildcard $(1)/cpu/*.c))
STAGE_LIBS := $(foreach d,$(DIRS),$(call libname,$(d)))

TEST_SRC  := $(wildcard tests/unit/test_*.c)
TEST_BINS := $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%)
BENCH_SRC  := $(wildcard tests/bench/bench_*.c)
BENCH_BINS := $(BENCH_SRC:tests/bench/%.c=$(BUILD)/bench/%)

.PHONY: all test asan asan-test clean deps run bench install fuzz fuzz-libfuzzer lf-targets cuda gpu-check
.SECONDARY:

all: $(BINS) $(TEST_BINS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(COMMON_LIB): $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/obj/%.cu.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -MMD -MP -c $< -o $@

# `make cuda`: only the CUDA backend's objects (CI's compile check of the kernels).
cuda:
	@if [ "$(CUDA)" != 1 ]; then echo "make cuda: no nvcc found (set NVCC=/path/to/nvcc)"; exit 1; fi
	@$(MAKE) --no-print-directory $(CUDA_OBJ)

# `make gpu-check`: on a machine with a CUDA device, build and run the
# CUDA-vs-CPU parity checks and a short decode benchmark (tests/gpu/gpu_check.sh);
# without one it says so and exits 0.
gpu-check:
	@bash tests/gpu/gpu_check.sh

$(BUILD)/lib/libglm%.a: $$(patsubst $$(pc),$(BUILD)/obj/$$(po),$$(wildcard lib/$$*/*.c))
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# lib<folder>.a for each binary folder (may be empty: ar needs no members then)
define LIB_RULES
$(call libname,$(1)): $(patsubst %.c,$(BUILD)/obj/%.o,$(call dirsrc,$(1))) $(if $(filter engine,$(1)),$(CUDA_OBJ))
	@mkdir -p $$(dir $$@)
	rm -f $$@ && ar rcs $$@ $$^
endef
$(foreach d,$(DIRS),$(eval $(call LIB_RULES,$(d))))
define STAGE_RULES
$(BUILD)/bin/$(1): $(BUILD)/obj/$(2)/main.o $(call libname,$(2)) $(STAGE_LIBS) $(SHARED_LIBS) $(COMMON_LIB)
	@mkdir -p $$(dir $$@)
	$(CC) $(CFLAGS) -o $$@ $$< $(call libname,$(2)) $(STAGE_LIBS) $(SHARED_LIBS) $(COMMON_LIB) $(LDLIBS)
endef
$(foreach p,$(present),$(eval $(call STAGE_RULES,$(word 1,$(subst :, ,$(p))),$(word 2,$(subst :, ,$(p))))))

# Unit tests link every stage library, so a test can exercise a stage's logic.
$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(STAGE_LIBS) $(SHARED_LIBS) $(COMMON_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(STAGE_LIBS) $(STAGE_LIBS) $(SHARED_LIBS) $(COMMON_LIB) $(LDLIBS)

# Benchmarks (not tests): tests/bench/bench_*.c, run by tests/bench/*.sh.
$(BUILD)/bench/%: $(BUILD)/obj/tests/bench/%.o $(STAGE_LIBS) $(SHARED_LIBS) $(COMMON_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(STAGE_LIBS) $(SHARED_LIBS) $(COMMON_LIB) $(LDLIBS)

bench: $(BENCH_BINS)
	@for s in tests/bench/*.sh; do BUILD=$(BUILD) bash $$s || exit 1; done

# glm-engine against llama.cpp on the same weights (downloads and builds llama.cpp from the
# llama-cpp-python sdist in PEER_DIR, default /tmp/glmpipe-peer; not part of CI): tools/bench-peer.
.PHONY: bench-peer
bench-peer: all
	BUILD=$(BUILD) tools/bench-peer

# test and run install what they need first, then re-enter make so the
# pkg-config flags are computed with the packages present.
test:
	@scripts/install-deps.sh
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) bash tests/run.sh

run:
	@scripts/install-deps.sh
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) scripts/run.sh $(ARGS)

# Binaries to $(PREFIX)/bin, the systemd units (ExecStart pointed at that
# prefix) and, when absent, the environment file (docs/deploy.md).
PREFIX  ?= /usr/local
UNITDIR ?= /etc/systemd/system
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(UNITDIR) $(DESTDIR)/etc/glmpipe
	install -m 755 $(BINS) $(DESTDIR)$(PREFIX)/bin/
	for u in systemd/*.service systemd/*.target; do \
	  sed 's#/usr/local/bin/#$(PREFIX)/bin/#g' $$u > $(DESTDIR)$(UNITDIR)/$$(basename $$u) && chmod 644 $(DESTDIR)$(UNITDIR)/$$(basename $$u); done
	[ -e $(DESTDIR)/etc/glmpipe/glmpipe.env ] || install -m 640 systemd/glmpipe.env $(DESTDIR)/etc/glmpipe/glmpipe.env

asan:
	$(MAKE) BUILD=build-asan OPT=-O1 CUDA=0 \
	  EXTRA_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  EXTRA_LDFLAGS="-fsanitize=address,undefined"

asan-test: asan
	@BUILD=build-asan ASAN_OPTIONS=detect_leaks=1 GLM_SKIP_PY=$${GLM_SKIP_PY:-0} bash tests/run.sh

deps:
	@scripts/install-deps.sh

# ---- fuzzing: never part of `make test`
FUZZ_SECONDS ?= 60
FUZZ_BUILD   ?= build
fuzz: $(if $(filter build-asan,$(FUZZ_BUILD)),asan,all)
	@scripts/test-venv.sh >/dev/null
	@FUZZ_BUILD=$(FUZZ_BUILD) FUZZ_SECONDS=$(FUZZ_SECONDS) tests/.venv/bin/python tests/fuzz/fuzz_stages.py

# libFuzzer targets, built with Debian's clang (and libclang-rt's fuzzer
# runtime) into build-fuzz/ with ASan+UBSan. The safetensors target takes the
# loader's object alone: the engine's CPU kernels need gcc's cpu builtins.
LF_SRC  := $(wildcard tests/fuzz/fuzz_*.c)
LF_BINS := $(LF_SRC:tests/fuzz/%.c=$(BUILD)/fuzzbin/%)
LF_LIBS := $(BUILD)/lib/libtokenize.a $(BUILD)/obj/engine/loader.o $(SHARED_LIBS) $(COMMON_LIB)
fuzz-libfuzzer:
	@scripts/install-deps.sh fuzz
	@$(MAKE) --no-print-directory BUILD=build-fuzz CC=clang OPT=-O1 \
	  EXTRA_CFLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer" lf-targets
	@BUILD=build-fuzz FUZZ_SECONDS=$(FUZZ_SECONDS) bash tests/fuzz/run_libfuzzer.sh
lf-targets: $(LF_BINS)
$(BUILD)/fuzzbin/%: $(BUILD)/obj/tests/fuzz/%.o $(LF_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fsanitize=fuzzer,address,undefined -o $@ $< $(LF_LIBS) $(LDLIBS)

clean:
	rm -rf build build-asan build-fuzz

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

# ---- NCCL communicator on a GPU machine: tests/gpu/nccl_check.c (needs a
# CUDA device, so never part of make test). nccl-check builds it with the
# engine library of the CUDA build (comm_nccl.cu inside, libnccl dlopen'ed);
# nccl-run runs it (GLM_NCCL_RANKS=N also checks TP = N over N cards).
.PHONY: nccl-check nccl-run
$(BUILD)/gpu/nccl_check: tests/gpu/nccl_check.c $(STAGE_LIBS) $(SHARED_LIBS) $(COMMON_LIB)
	@if [ "$(CUDA)" != 1 ] || [ -z "$(NCCL_H)" ]; then echo "nccl-check: needs nvcc and nccl.h"; exit 1; fi
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -I$(CUDA_HOME)/include -o $@ $< $(STAGE_LIBS) $(SHARED_LIBS) $(COMMON_LIB) $(LDLIBS)
nccl-check: $(BUILD)/gpu/nccl_check
nccl-run: nccl-check
	$(BUILD)/gpu/nccl_check
