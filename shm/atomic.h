/*
 * atomic.h - every atomic operation on shared memory goes through here.
 *
 * Shared-memory words are plain integers in a mapped region (another
 * process, maybe another language, shares them), so we use the GCC/Clang
 * __atomic builtins on them rather than _Atomic types.  Each caller's
 * comment names the barrier this one pairs with.
 */
#ifndef CKPT_SHM_ATOMIC_H
#define CKPT_SHM_ATOMIC_H

#include <stdint.h>

#define ckpt__load_acquire(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define ckpt__load_relaxed(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define ckpt__store_release(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define ckpt__store_relaxed(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define ckpt__fence_seq_cst() __atomic_thread_fence(__ATOMIC_SEQ_CST)

/* Single-writer counter: load + store, no read-modify-write needed. */
#define ckpt__count_add(p, n) \
	ckpt__store_relaxed((p), ckpt__load_relaxed(p) + (n))

static inline void ckpt__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#endif
}

#define CKPT_LIKELY(x) __builtin_expect(!!(x), 1)
#define CKPT_UNLIKELY(x) __builtin_expect(!!(x), 0)

#endif
