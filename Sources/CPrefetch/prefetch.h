// Software prefetch for the attention kernels (Swift has no prefetch intrinsic of its own).
#ifndef KVLAB_PREFETCH_H
#define KVLAB_PREFETCH_H
/// Starts loading the cache line holding p into every cache level (PREFETCHT0 on x86,
/// PRFM PLDL1KEEP on arm64). A hint: no fault, no architectural effect.
static inline __attribute__((always_inline)) void kv_prefetch(const void *p) { __builtin_prefetch(p, 0, 3); }
#endif
