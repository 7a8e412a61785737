# shmckpt - one plain Makefile.
#
#   make            library, tools, tests and benchmarks (into build/)
#   make test       install missing Debian packages (as root), then run the
#                   suite plain, under ASan+UBSan, and the threaded tests
#                   under TSan
#   make demo       the end-to-end demo
#   make bench      every benchmark; make bench-NAME runs one
#   make install    PREFIX=/usr/local DESTDIR=
#   make SANITIZE=address,undefined O=build-asan   a sanitizer build
#   make CC=clang   builds with clang too

VERSION  := 0.1.0
SOVER    := 0
CC       ?= cc
O        ?= build
SANITIZE ?=
PREFIX   ?= /usr/local
DESTDIR  ?=
TEST_TIMEOUT ?= 300

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
	-Wmissing-prototypes -Wpointer-arith -Wformat=2 -Wvla -Wundef \
	-Wcast-align -Wwrite-strings -Wnull-dereference
CPPFLAGS += -D_GNU_SOURCE -Icore -Ishm -Iiouring -Idrivers -Idrivers/kafka
CFLAGS   ?= -O2 -g
CFLAGS   += -std=c11 -fPIC $(WARN) -pthread
LDLIBS   := -luring -lxxhash -lpthread
ifneq ($(SANITIZE),)
CFLAGS  += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS += -fsanitize=$(SANITIZE)
endif

LIB_SRCS := $(sort $(wildcard core/*.c shm/*.c iouring/*.c))
LIB_OBJS := $(LIB_SRCS:%.c=$(O)/obj/%.o)
LIB_A    := $(O)/lib/libshmckpt.a
LIB_SO   := $(O)/lib/libshmckpt.so.$(VERSION)

TEST_SRCS  := $(sort $(wildcard tests/test_*.c))
TEST_BINS  := $(TEST_SRCS:tests/%.c=$(O)/tests/%)
TEST_UTIL  := $(O)/obj/tests/testutil.o
# Tests that run threads are also run under ThreadSanitizer.
TSAN_TESTS := $(basename $(notdir $(shell grep -l 'CKPT_TEST_THREADED' $(TEST_SRCS) /dev/null)))

BENCH_SRCS := $(sort $(wildcard perf/bench_*.c))
BENCH_BINS := $(BENCH_SRCS:perf/%.c=$(O)/perf/%)
BENCH_NAMES := $(patsubst bench_%,%,$(basename $(notdir $(BENCH_SRCS))))

# The Kafka driver: its own static library over librdkafka, so the core
# library does not depend on Kafka.
KAFKA_SRCS := $(sort $(wildcard drivers/kafka/*.c))
KAFKA_OBJS := $(KAFKA_SRCS:%.c=$(O)/obj/%.o)
KAFKA_A    := $(if $(KAFKA_SRCS),$(O)/lib/libshmckpt_kafka.a)

# drivers/shmckptd.c is the sidecar daemon; every other drivers/*.c is a
# part of the one 'shmckpt' command-line tool.
DAEMON_SRC := $(wildcard drivers/shmckptd.c)
TOOL_SRCS := $(sort $(filter-out $(DAEMON_SRC),$(wildcard drivers/*.c)))
TOOL_OBJS := $(TOOL_SRCS:%.c=$(O)/obj/%.o)
TOOLS     := $(if $(TOOL_SRCS),$(O)/bin/shmckpt) $(if $(DAEMON_SRC),$(O)/bin/shmckptd)

.PHONY: all lib tests benches tools deps test test-plain test-asan test-tsan \
	test-valgrind test-cppcheck test-fuzz check bench demo install \
	uninstall clean
.SUFFIXES:

all: lib tools tests benches

lib: $(LIB_A) $(LIB_SO) $(KAFKA_A)
tests: $(TEST_BINS)
benches: $(BENCH_BINS)
tools: $(TOOLS)

$(O)/obj/%.o: %.c $(wildcard core/*.h shm/*.h iouring/*.h drivers/*.h drivers/kafka/*.h tests/*.h perf/*.h) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(LIB_A): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# Only ckpt_ symbols are exported (core/libshmckpt.map); -z defs catches a
# missing dependency at link time, not at a user's run time.
$(LIB_SO): $(LIB_OBJS) core/libshmckpt.map
	@mkdir -p $(dir $@)
	$(CC) -shared -Wl,-soname,libshmckpt.so.$(SOVER) \
		-Wl,--version-script=core/libshmckpt.map -Wl,-z,defs \
		$(LDFLAGS) -o $@ $(LIB_OBJS) $(LDLIBS)
	ln -sf libshmckpt.so.$(VERSION) $(O)/lib/libshmckpt.so.$(SOVER)
	ln -sf libshmckpt.so.$(SOVER) $(O)/lib/libshmckpt.so

$(KAFKA_A): $(KAFKA_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(O)/tests/%: $(O)/obj/tests/%.o $(TEST_UTIL) $(KAFKA_A) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ -lcmocka -lrdkafka $(LDLIBS) -lm

$(O)/perf/%: $(O)/obj/perf/%.o $(KAFKA_A) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ -lrdkafka $(LDLIBS) -lm

$(O)/bin/shmckptd: $(O)/obj/drivers/shmckptd.o $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(O)/bin/shmckpt: $(TOOL_OBJS) $(KAFKA_A) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ -lrdkafka $(LDLIBS) -lm

deps:
	@./deps.sh

# The suite three times (plain; ASan+UBSan; the threaded tests under TSan),
# then valgrind over the unit tests, cppcheck, and a short run of each fuzz
# target.  Every step runs even when an earlier one failed, so that one run
# shows everything; the last line adds them up ("total: N passed, N
# failed, N skipped") and the exit status is non-zero if anything failed.
TEST_STEPS := test-plain test-asan test-tsan test-valgrind test-cppcheck \
	test-fuzz
TEST_SUMMARY := $(CURDIR)/build/test-summary.txt
test: deps
	@mkdir -p $(dir $(TEST_SUMMARY)); rm -f $(TEST_SUMMARY); \
	touch $(TEST_SUMMARY); rc=0; \
	for step in $(TEST_STEPS); do \
		n=$$(wc -l <$(TEST_SUMMARY)); \
		echo "== $$step"; \
		CKPT_SUMMARY=$(TEST_SUMMARY) $(MAKE) --no-print-directory \
			$$step || { rc=1; \
			[ "$$(wc -l <$(TEST_SUMMARY))" = "$$n" ] && \
			echo "$$step 0 1 0" >>$(TEST_SUMMARY); }; \
	done; \
	tests/summary.sh $(TEST_SUMMARY) || rc=1; exit $$rc

test-plain: all
	tests/run-tests.sh $(O) plain $(TEST_TIMEOUT) $(notdir $(TEST_BINS))

test-asan:
	$(MAKE) --no-print-directory O=build-asan SANITIZE=address,undefined tests tools
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	CKPT_TEST_SCALE=$${CKPT_TEST_SCALE:-4} \
	tests/run-tests.sh build-asan asan $(TEST_TIMEOUT) $(notdir $(TEST_BINS))

test-tsan:
	$(MAKE) --no-print-directory O=build-tsan SANITIZE=thread tests
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	CKPT_TEST_SCALE=$${CKPT_TEST_SCALE:-4} \
	tests/run-tests.sh build-tsan tsan $(TEST_TIMEOUT) $(TSAN_TESTS)

test-valgrind:
	@tests/run-check.sh valgrind $(O)/test-logs/valgrind.log \
		$(MAKE) --no-print-directory valgrind

test-cppcheck:
	@tests/run-check.sh cppcheck $(O)/test-logs/cppcheck.log \
		$(MAKE) --no-print-directory cppcheck

# FUZZ_SMOKE_SECONDS per target (20 by default; the issue allows 30).
test-fuzz:
	@tests/run-check.sh fuzz-smoke $(O)/test-logs/fuzz-smoke.log \
		$(MAKE) --no-print-directory fuzz-smoke

check: test

bench: all bench-deps
	@for b in $(BENCH_NAMES); do perf/run-bench.sh $(O) $$b || exit 1; done
	@perf/make-table.sh

bench-%: all bench-deps
	@perf/run-bench.sh $(O) $*

# gnuplot-nox draws perf/results/memory.png.  deps.sh installs it as root;
# otherwise it says what to install, and bench-memory skips its plot.
.PHONY: bench-deps bench-long
bench-deps:
	@./deps.sh gnuplot-nox || echo "make: without gnuplot-nox, bench-memory skips its plot" >&2

# bench-memory for 10 minutes (the brief's figure) instead of 3.
bench-long: all bench-deps
	@CKPT_BENCH_SECONDS=600 CKPT_BENCH_WARMUP=60 perf/run-bench.sh $(O) memory

demo: deps all
	@if [ -x $(O)/bin/shmckpt ] && $(O)/bin/shmckpt demo --help >/dev/null 2>&1; then \
		$(O)/bin/shmckpt demo; \
	else \
		echo "make demo: the demo arrives with the Kafka driver (drivers/kafka);"; \
		echo "until then, 'make test' and 'make bench-commit' show the hot path."; \
	fi

$(O)/shmckpt.pc: shmckpt.pc.in Makefile
	@mkdir -p $(dir $@)
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' $< > $@

install: lib tools $(O)/shmckpt.pc
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include \
		$(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 644 core/shmckpt.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 $(LIB_A) $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(LIB_SO) $(DESTDIR)$(PREFIX)/lib/
	ln -sf libshmckpt.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libshmckpt.so.$(SOVER)
	ln -sf libshmckpt.so.$(SOVER) $(DESTDIR)$(PREFIX)/lib/libshmckpt.so
	install -m 644 $(O)/shmckpt.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/
	$(if $(TOOLS),install -m 755 $(TOOLS) $(DESTDIR)$(PREFIX)/bin/)
	install -d $(DESTDIR)$(PREFIX)/lib/systemd/system
	sed -e 's|/usr/local/bin/|$(PREFIX)/bin/|' drivers/shmckptd.service \
		> $(DESTDIR)$(PREFIX)/lib/systemd/system/shmckptd.service

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/include/shmckpt.h \
		$(DESTDIR)$(PREFIX)/lib/libshmckpt.* \
		$(DESTDIR)$(PREFIX)/lib/pkgconfig/shmckpt.pc \
		$(DESTDIR)$(PREFIX)/lib/systemd/system/shmckptd.service \
		$(DESTDIR)$(PREFIX)/bin/shmckpt $(DESTDIR)$(PREFIX)/bin/shmckptd

clean:
	rm -rf build build-asan build-tsan

# --- fuzzing, valgrind, cppcheck ---
#
#   make fuzz          each fuzz target for FUZZ_SECONDS (default 300)
#   make fuzz-smoke    each fuzz target for FUZZ_SMOKE_SECONDS (default 20)
#   make fuzz-seeds    regenerate the committed seed corpora
#   make valgrind      the fast single-process unit tests under memcheck
#   make cppcheck      static analysis of the library and drivers
#
# Fuzz targets are built with clang (libFuzzer, ASan, UBSan) into
# build-fuzz/; each compiles the library sources it needs itself, so the
# whole of the code under test is instrumented for coverage.  New corpus
# entries go to build-fuzz/corpus/, never into the tree; a crash leaves its
# input in build-fuzz/crashes/.
FUZZ_CC ?= clang
FUZZ_O := build-fuzz
FUZZ_SECONDS ?= 300
FUZZ_SMOKE_SECONDS ?= 20
FUZZ_CFLAGS := -std=c11 -g -O1 -fno-omit-frame-pointer -Wall -Wextra \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	-D_GNU_SOURCE -Icore -Ishm -Iiouring -Itests/fuzz
FUZZ_HDRS := $(wildcard core/*.h shm/*.h tests/fuzz/*.h) Makefile
FUZZ_BASE := core/error.c core/util.c
FUZZ_SRCS_fuzz_region := shm/region.c shm/ring.c $(FUZZ_BASE)
FUZZ_SRCS_fuzz_ring := shm/region.c shm/ring.c $(FUZZ_BASE)
FUZZ_SRCS_fuzz_slot := core/slot.c core/snapshot.c $(FUZZ_BASE)
FUZZ_SRCS_fuzz_dump := core/slot.c core/snapshot.c $(FUZZ_BASE)
# fuzz_slot and fuzz_dump join once the slot format and the snapshot exist.
FUZZ_SLOT_NEEDS := tests/fuzz/fuzz_slot.c core/slot.c core/snapshot.c
FUZZ_TARGETS := fuzz_region fuzz_ring \
	$(if $(filter 3,$(words $(wildcard $(FUZZ_SLOT_NEEDS)))),fuzz_slot \
	fuzz_dump)
FUZZ_BINS := $(FUZZ_TARGETS:%=$(FUZZ_O)/%)
# fuzz_ring: a whole 64 KiB ring plus its 16-byte control header.
FUZZ_FLAGS_fuzz_ring := -max_len=65552
# fuzz_slot, fuzz_dump: a header and a body of up to 12 KiB.
FUZZ_FLAGS_fuzz_slot := -max_len=16384
FUZZ_FLAGS_fuzz_dump := -max_len=16384

.PHONY: fuzz fuzz-smoke fuzz-build fuzz-seeds fuzz-clean valgrind cppcheck

fuzz-build: $(FUZZ_BINS)

.SECONDEXPANSION:
$(FUZZ_O)/fuzz_%: tests/fuzz/fuzz_%.c $$(FUZZ_SRCS_fuzz_%) $(FUZZ_HDRS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_SRCS_fuzz_$*) -lxxhash

# The seed generator writes the slot seeds too once fuzz_slot is built.
MAKE_SEEDS_SRCS := tests/fuzz/make-seeds.c shm/region.c shm/ring.c \
	$(FUZZ_BASE) $(if $(filter fuzz_slot,$(FUZZ_TARGETS)),core/slot.c \
	core/snapshot.c)
$(FUZZ_O)/make-seeds: $(MAKE_SEEDS_SRCS) $(FUZZ_HDRS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -std=c11 -g -O1 -Wall -Wextra -D_GNU_SOURCE -Icore -Ishm \
		-Iiouring -Itests/fuzz \
		$(if $(filter fuzz_slot,$(FUZZ_TARGETS)),-DFZ_HAVE_SLOT) \
		-o $@ $(MAKE_SEEDS_SRCS) -lxxhash

fuzz-seeds: $(FUZZ_O)/make-seeds
	$(FUZZ_O)/make-seeds tests/fuzz/corpus

# One run-fuzz.sh per target; the first failure stops the rest.
FUZZ_RUN = $(foreach t,$(FUZZ_TARGETS),tests/fuzz/run-fuzz.sh $(FUZZ_O)/$(t) \
	$(1) tests/fuzz/corpus/$(t):tests/fuzz/crashes/$(t) $(FUZZ_O)/corpus/$(t) \
	$(FUZZ_FLAGS_$(t)) &&) true

fuzz: $(FUZZ_BINS)
	@$(call FUZZ_RUN,$(FUZZ_SECONDS))

fuzz-smoke: $(FUZZ_BINS)
	@$(call FUZZ_RUN,$(FUZZ_SMOKE_SECONDS))

fuzz-clean:
	rm -rf $(FUZZ_O)

# valgrind memcheck over the plain build of the unit tests that are
# single-process and quick (tests that fork keep their children under
# valgrind but do not exec; multi-process and crash tests are left out).
# Tests not written yet are skipped until they exist.
VALGRIND_TESTS ?= test_ring test_errors test_snapshot test_slot
VALGRIND_BINS := $(filter $(addprefix $(O)/tests/,$(VALGRIND_TESTS)),$(TEST_BINS))
VALGRIND := valgrind -q --error-exitcode=1 --leak-check=full \
	--errors-for-leak-kinds=definite --trace-children=no \
	--child-silent-after-fork=yes

valgrind: $(VALGRIND_BINS)
	@mkdir -p $(O)/test-logs
	@fail=0; for b in $(VALGRIND_BINS); do t=$${b##*/}; \
		log=$(O)/test-logs/valgrind-$$t.log; start=$$(date +%s); \
		if timeout --kill-after=10 $(TEST_TIMEOUT) $(VALGRIND) $$b \
				>$$log 2>&1; then \
			printf '  PASS  valgrind %-23s %4ss\n' $$t \
				$$(( $$(date +%s) - start )); \
		else fail=1; printf '  FAIL  valgrind %s\n' $$t; \
			tail -n 60 $$log; fi; \
	done; exit $$fail

# Static analysis; false positives go to tests/cppcheck.supp, each with why.
CPPCHECK_DIRS := $(wildcard core shm iouring drivers)
cppcheck:
	cppcheck --enable=warning,portability,performance --error-exitcode=1 \
		--inline-suppr --suppressions-list=tests/cppcheck.supp \
		--std=c11 -q -D_GNU_SOURCE -Icore -Ishm -Iiouring -Idrivers \
		-Idrivers/kafka $(CPPCHECK_DIRS)
