import Foundation

/// Where a decode step's attention time goes, per policy: choosing the rows (the policy's
/// `select` / `selectRows`) and attending them (the rows' decode kernel). For benchmarks
/// (`kvlab bench attention`); a cache times nothing unless one is attached (`KVCache.phaseClock`).
/// Times are thread time summed over KV heads, so with several threads they add up to more than
/// the step's wall time.
public final class DecodePhaseClock {
    public private(set) var chooseSeconds = 0.0
    public private(set) var attendSeconds = 0.0
    /// Decode layer steps timed since the last reset.
    public private(set) var layerSteps = 0
    public init() {}

    public func reset() { chooseSeconds = 0; attendSeconds = 0; layerSteps = 0 }

    /// Adds one layer step's per-head nanoseconds (choose, attend), [heads].
    func add(choose: UnsafePointer<UInt64>, attend: UnsafePointer<UInt64>, heads: Int) {
        for h in 0..<heads { chooseSeconds += Double(choose[h]) / 1e9; attendSeconds += Double(attend[h]) / 1e9 }
        layerSteps += 1
    }

    @inline(__always) static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }
}
