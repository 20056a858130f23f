# pushgate build. `make` builds build/pushgate; `make SAN=1` builds build-asan/ with
# AddressSanitizer + UndefinedBehaviorSanitizer; `make SAN=thread` builds build-tsan/ with
# ThreadSanitizer (scripts/tsan.sh runs the multi-worker tests on it); `make unit` runs
# the Criterion tests; `make fuzz` builds the libFuzzer targets (clang); `make test` runs
# everything.

SAN ?= 0
ifeq ($(SAN),1)
BUILD ?= build-asan
SANFLAGS = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
OPT = -O1 -g
else ifeq ($(SAN),thread)
BUILD ?= build-tsan
SANFLAGS = -fsanitize=thread -fno-omit-frame-pointer
OPT = -O1 -g
else
BUILD ?= build
SANFLAGS =
OPT = -O2 -g
endif

CC ?= cc
LLHTTP_DIR ?= /usr/share/llhttp
LLHTTP_INC ?= /usr/share/include/llhttp
PKGS = libuv jansson libpcre2-8 libjwt openssl sqlite3 hiredis libnghttp2 zlib libnats
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN = -Wall -Wextra -Werror -Wshadow -Wformat=2
CFLAGS_BASE = -std=gnu11 $(OPT) $(SANFLAGS) -D_GNU_SOURCE -MMD -MP -Isrc -I$(LLHTTP_INC) $(PKG_CFLAGS)
CFLAGS_ALL = $(CFLAGS_BASE) $(WARN) $(CFLAGS)
LDLIBS_ALL = $(PKG_LIBS) -lwslay -lpthread $(LDLIBS)

SRCS := $(shell find src -name '*.c' ! -name main.c | sort)
OBJS := $(SRCS:%.c=$(BUILD)/obj/%.o)
LLHTTP_OBJS := $(BUILD)/obj/llhttp/api.o $(BUILD)/obj/llhttp/http.o $(BUILD)/obj/llhttp/llhttp.o
LIB := $(BUILD)/libpushgate.a

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all unit unit-build fuzz test clean format bench lint
all: $(BUILD)/pushgate

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

# llhttp is generated C from Debian's node-llhttp: compiled as is, without our warnings
$(BUILD)/obj/llhttp/%.o: $(LLHTTP_DIR)/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -w -c $< -o $@

# the console's files (web/console/) become C arrays in the build dir, part of the library
CONSOLE_ASSETS := $(sort $(wildcard web/console/*))
CONSOLE_OBJ := $(BUILD)/obj/gen/console_assets.o
$(BUILD)/gen/console_assets.c: $(CONSOLE_ASSETS) scripts/embed_assets.sh
	@mkdir -p $(dir $@)
	sh scripts/embed_assets.sh $@ $(CONSOLE_ASSETS)

$(CONSOLE_OBJ): $(BUILD)/gen/console_assets.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(LIB): $(OBJS) $(LLHTTP_OBJS) $(CONSOLE_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/pushgate: $(BUILD)/obj/src/main.o $(LIB)
	$(CC) $(SANFLAGS) -o $@ $^ $(LDLIBS_ALL)

$(BUILD)/tests/%: tests/unit/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Itests/unit -o $@ $< $(LIB) $(LDLIBS_ALL) -lcriterion

# builds the unit tests without running them (scripts/test.sh builds ahead)
unit-build: $(UNIT_BINS)

ifeq ($(SAN),thread)
# Criterion cannot start under TSan: BoxFort's shared arena looks for free address space
# where TSan's shadow memory already is, and aborts ("Could not initialize inheritable
# arena", Snaipe/Criterion#274). So under SAN=thread the unit tests are built, not run;
# scripts/tsan.sh runs the multi-worker integration tests instead.
unit: $(UNIT_BINS)
	@echo "unit: built $(words $(UNIT_BINS)) unit tests with TSan; not run (Criterion cannot run under TSan, Snaipe/Criterion#274)"
else
# Criterion reports a test whose child process then fails LeakSanitizer (or prints a
# sanitizer error) as passing, so the output is checked for sanitizer reports too.
unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; \
	  { $$t --jobs 1 2>&1; echo "unit-exit=$$?"; } >$$t.log; cat $$t.log; \
	  grep -q '^unit-exit=0$$' $$t.log || exit 1; \
	  if grep -qE 'ERROR: [A-Za-z]+Sanitizer|runtime error:' $$t.log; then \
	    echo "$$t: a sanitizer report (above) fails the run"; exit 1; fi; done
endif

FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BUILD := build-fuzz
FUZZ_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=$(FUZZ_BUILD)/%)
fuzz:
	$(MAKE) BUILD=$(FUZZ_BUILD) CC=clang SAN=0 \
	  CFLAGS="-fsanitize=fuzzer-no-link,address,undefined -Wno-unknown-warning-option" \
	  $(FUZZ_BUILD)/libpushgate.a
	@for f in $(FUZZ_SRCS); do b=$(FUZZ_BUILD)/$$(basename $$f .c); \
	  echo "clang $$f -> $$b"; \
	  clang $(CFLAGS_BASE) $(WARN) -g -O1 -fsanitize=fuzzer,address,undefined -o $$b $$f \
	    $(FUZZ_BUILD)/libpushgate.a $(LDLIBS_ALL) || exit 1; done

test:
	bash scripts/test.sh

bench:
	$(MAKE) -C bench

# cppcheck and clang-tidy (.clang-tidy) over src/; any finding fails
lint:
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability --inline-suppr \
	  --std=c11 -Isrc -I$(LLHTTP_INC) -D'json_object_foreach(o,k,v)=for(k=0,v=0;k;)' \
	  -D'json_array_foreach(a,i,v)=for(i=0,v=0;i<1;i++)' src
	clang-tidy --quiet --warnings-as-errors='*' $(SRCS) src/main.c -- -std=gnu11 -D_GNU_SOURCE \
	  -Isrc -I$(LLHTTP_INC) $(PKG_CFLAGS)

format:
	clang-format -i $$(find src tests/unit tests/fuzz bench -name '*.[ch]' 2>/dev/null)

clean:
	rm -rf build build-asan build-tsan build-fuzz

-include $(OBJS:.o=.d) $(BUILD)/obj/src/main.d
