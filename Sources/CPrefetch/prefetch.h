// Software prefetch for the attention kernels (Swift has no prefetch intrinsic of its own).
#ifndef KVLAB_PREFETCH_H
#define KVLAB_PREFETCH_H
/// Starts loading the cache line holding p into every cache level (PREFETCHT0 on x86,
/// PRFM PLDL1KEEP on arm64). A hint: no fault, no architectural effect.
static inline __attribute__((always_inline)) void kv_prefetch(const void *p) { __builtin_prefetch(p, 0, 3); }
/// Starts loading the cache line holding p into the outer caches only (PREFETCHT2 on x86,
/// PRFM PLDL3KEEP on arm64): the far half of the gathered rows' two-level prefetch.
static inline __attribute__((always_inline)) void kv_prefetch_far(const void *p) { __builtin_prefetch(p, 0, 1); }
#endif
