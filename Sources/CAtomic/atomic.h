// Sequentially consistent atomics on a 64-bit word and a spin-wait hint, for KVTensor's worker
// pool (Swift's own Atomic needs macOS 15; these are the compiler builtins, on every platform).
#ifndef KVLAB_ATOMIC_H
#define KVLAB_ATOMIC_H
#include <stdint.h>

static inline __attribute__((always_inline)) int64_t kv_atomic_load(const int64_t *p) {
    return __atomic_load_n(p, __ATOMIC_SEQ_CST);
}
static inline __attribute__((always_inline)) void kv_atomic_store(int64_t *p, int64_t v) {
    __atomic_store_n(p, v, __ATOMIC_SEQ_CST);
}
/// Adds v and returns the previous value.
static inline __attribute__((always_inline)) int64_t kv_atomic_fetch_add(int64_t *p, int64_t v) {
    return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}
/// Stores v and returns the previous value.
static inline __attribute__((always_inline)) int64_t kv_atomic_exchange(int64_t *p, int64_t v) {
    return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST);
}
/// If *p == expected, stores desired and returns 1; otherwise returns 0.
static inline __attribute__((always_inline)) int kv_atomic_cas(int64_t *p, int64_t expected, int64_t desired) {
    return __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}
/// A spin-wait hint (PAUSE on x86, YIELD on arm64).
static inline __attribute__((always_inline)) void kv_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}
#endif
