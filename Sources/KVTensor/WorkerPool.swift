import CAtomic
import Foundation

/// Persistent worker threads for the fine-grained parallel loops of decoding: a decode step runs
/// about 150 parallel loops (matrix-vector products, attention over KV heads) of 10-200 µs each,
/// where waking a sleeping thread per loop (GCD's `concurrentPerform` on Linux: a futex wake of
/// 5-50 µs each time) costs as much as the work. Workers spin (PAUSE, then `sched_yield`, so
/// another runnable thread on the core gets it) for `spinMicroseconds` after each loop before they
/// sleep on a semaphore, like llama.cpp's and OpenBLAS's thread pools.
///
/// `run(n, body)` calls `body(0..<n)` on the calling thread and the workers; tasks are handed out
/// one at a time from an atomic counter (dynamic scheduling: a descheduled thread on a shared
/// machine delays only its current task). Calls from inside a loop, or from a second thread while
/// a loop runs, run serially on their own thread: the pool never deadlocks and never nests.
public final class WorkerPool: @unchecked Sendable {
    /// The process-wide pool, sized by `BLAS.setThreads` / `configure(threads:)` (all cores by default).
    public static let shared = WorkerPool(threads: ProcessInfo.processInfo.activeProcessorCount)

    /// How long an idle worker spins before it sleeps (a loop that follows within this time starts
    /// without a wake-up).
    public var spinMicroseconds: Int = 200

    /// Threads a loop uses, the caller included.
    public private(set) var threads: Int

    // Atomic words: [0] generation g, [1] the loop's task count, tagged (g << 32 | n), [2] next
    // task, tagged (g << 32 | t), [3] tasks finished, [4] busy flag, [5 + i] worker i asleep.
    // Tags make a late worker (woken after its loop ended) see that the loop is over instead of
    // taking a task of the next one; the caller waits for finished tasks, never for workers.
    private let words: UnsafeMutablePointer<Int64>
    private static let wordCount = 64
    private var workers: [(thread: Thread, wake: DispatchSemaphore)] = []
    private var exited = DispatchSemaphore(value: 0)
    private var stopping = false
    // The current loop (written before its generation is published; read only by a thread that
    // has claimed one of its tasks, which the caller waits for).
    private var body: ((Int) -> Void)?
    private var parkAfter = false

    public init(threads: Int) {
        words = .allocate(capacity: Self.wordCount)
        words.initialize(repeating: 0, count: Self.wordCount)
        self.threads = 1
        configure(threads: threads)
    }

    deinit {
        stopWorkers()
        words.deallocate()
    }

    /// Sets the number of threads (1 = everything on the caller) and restarts the workers. Not to
    /// be called while a loop runs.
    public func configure(threads n: Int) {
        let n = max(1, min(n, Self.wordCount - 5 + 1))
        guard n != threads || workers.count != n - 1 else { return }
        stopWorkers()
        threads = n
        stopping = false
        exited = DispatchSemaphore(value: 0)
        // The generation workers start from is read here, not when a thread first runs (a stop or
        // a loop published before then would otherwise go unnoticed).
        let start = kv_atomic_load(words)
        for i in 0..<(n - 1) {
            let wake = DispatchSemaphore(value: 0)
            let t = Thread { [unowned self] in self.workerLoop(index: i, start: start, wake: wake) }
            t.name = "kvlab-worker-\(i)"
            t.stackSize = 1 << 20
            workers.append((t, wake))
        }
        for w in workers { w.thread.start() }
    }

    private func stopWorkers() {
        guard !workers.isEmpty else { return }
        stopping = true
        kv_atomic_fetch_add(words, 1)
        wakeSleepers()
        for _ in workers { exited.wait() }
        workers = []
    }

    private func wakeSleepers() {
        for (i, w) in workers.enumerated() where kv_atomic_exchange(words + 5 + i, 0) == 1 { w.wake.signal() }
    }

    /// Runs body(i) for i in 0..<n across the pool's threads and returns when all are done.
    /// `park`: workers sleep right after this loop instead of spinning (when the next thing the
    /// process does is a BLAS call with threads of its own).
    public func run(_ n: Int, park: Bool = false, _ body: (Int) -> Void) {
        guard n > 0 else { return }
        guard n > 1, !workers.isEmpty, n < 1 << 31, kv_atomic_exchange(words + 4, 1) == 0 else {
            for i in 0..<n { body(i) }
            return
        }
        withoutActuallyEscaping(body) { escaping in
            self.body = escaping
            parkAfter = park
            let g = kv_atomic_load(words) + 1
            kv_atomic_store(words + 1, g << 32 | Int64(n))
            kv_atomic_store(words + 2, g << 32)
            kv_atomic_store(words + 3, 0)
            kv_atomic_store(words, g)                       // publish
            wakeSleepers()
            work(generation: g)
            var spins = 0
            while kv_atomic_load(words + 3) != Int64(n) {
                spins += 1
                if spins < 4096 { kv_cpu_relax() } else { sched_yield() }
            }
            self.body = nil
        }
        kv_atomic_store(words + 4, 0)
    }

    /// Claims and runs tasks of loop `g` until none is left (or the loop is another one).
    private func work(generation g: Int64) {
        let job = kv_atomic_load(words + 1)
        guard job >> 32 == g else { return }
        let n = job & 0xFFFF_FFFF
        while true {
            let cur = kv_atomic_load(words + 2)
            guard cur >> 32 == g, cur & 0xFFFF_FFFF < n else { return }
            guard kv_atomic_cas(words + 2, cur, cur + 1) != 0 else { continue }
            body!(Int(cur & 0xFFFF_FFFF))
            kv_atomic_fetch_add(words + 3, 1)
        }
    }

    private func workerLoop(index i: Int, start: Int64, wake: DispatchSemaphore) {
        var seen = start
        var spin = true
        while true {
            seen = waitForWork(index: i, seen: seen, wake: wake, spin: spin)
            if stopping { exited.signal(); return }
            spin = !parkAfter
            work(generation: seen)
        }
    }

    /// Spins (PAUSE, then sched_yield) up to `spinMicroseconds`, then sleeps; returns the new generation.
    private func waitForWork(index i: Int, seen: Int64, wake: DispatchSemaphore, spin: Bool) -> Int64 {
        if spin {
            let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(spinMicroseconds) * 1000
            var spins = 0
            while true {
                let g = kv_atomic_load(words)
                if g != seen { return g }
                spins += 1
                if spins < 2048 { kv_cpu_relax(); continue }
                sched_yield()
                if spins & 63 == 0 && DispatchTime.now().uptimeNanoseconds > deadline { break }
            }
        }
        let flag = words + 5 + i
        kv_atomic_store(flag, 1)
        let g = kv_atomic_load(words)
        if g != seen {
            // The caller may already have claimed the flag and signalled: consume that signal.
            if kv_atomic_exchange(flag, 0) == 0 { wake.wait() }
            return g
        }
        wake.wait()
        return kv_atomic_load(words)
    }
}
