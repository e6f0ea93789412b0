import KVCacheCore
import KVExperiments

/// Caches holding captured K/V: `prefilledCaches` fed from the capture instead of a random draw.
func prefilledCaches(_ policies: [CachePolicy], captured c: CapturedKV, reserve: Int, threads: Int,
                     dtypes: [KVDType]? = nil) -> [KVCache] {
    var i = 0
    return prefilledCaches(policies, shape: c.shape, context: c.context, reserve: reserve, threads: threads, dtypes: dtypes) {
        defer { i += 1 }
        return c.prefix[i]
    }
}
