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
	check bench demo install uninstall clean
.SUFFIXES:

all: lib tools tests benches

lib: $(LIB_A) $(LIB_SO) $(KAFKA_A)
tests: $(TEST_BINS)
benches: $(BENCH_BINS)
tools: $(TOOLS)

$(O)/obj/%.o: %.c $(wildcard core/*.h shm/*.h iouring/*.h drivers/*.h drivers/kafka/*.h tests/*.h) Makefile
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

# The suite three times: plain; ASan+UBSan; the threaded tests under TSan.
test: deps
	$(MAKE) --no-print-directory test-plain
	$(MAKE) --no-print-directory test-asan
	$(MAKE) --no-print-directory test-tsan

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

check: test

bench: all
	@for b in $(BENCH_NAMES); do perf/run-bench.sh $(O) $$b || exit 1; done

bench-%: all
	@perf/run-bench.sh $(O) $*

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

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/include/shmckpt.h \
		$(DESTDIR)$(PREFIX)/lib/libshmckpt.* \
		$(DESTDIR)$(PREFIX)/lib/pkgconfig/shmckpt.pc \
		$(DESTDIR)$(PREFIX)/bin/shmckpt

clean:
	rm -rf build build-asan build-tsan
