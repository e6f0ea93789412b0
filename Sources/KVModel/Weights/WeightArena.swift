import Foundation

/// Memory for weight matrices, handed out from 2 MiB-aligned chunks that ask the kernel for
/// transparent huge pages (madvise MADV_HUGEPAGE, Linux).
///
/// A decode step streams every weight byte once. With 4 KiB pages that is a TLB miss every 4 KiB,
/// and on a virtual machine each miss walks two page tables: measured on the development VM
/// (2 cores, AMD EPYC), one thread summing a 256 MiB buffer read 9-10 GB/s on 4 KiB pages and
/// 17-20 GB/s on 2 MiB pages. The small matrices of a layer (70-550 KB here) share chunks, so
/// they sit on huge pages too; a chunk is freed when the last matrix in it is.
///
/// Pages are only resident once touched, so the slack at the end of the last chunk costs at most
/// one huge page (2 MiB) of RSS; `WeightMatrix.byteCount` counts the matrix bytes themselves.
final class WeightArena: @unchecked Sendable {
    static let shared = WeightArena()
    static let alignment = 2 << 20
    /// Chunk size; larger requests get a chunk of their own.
    static let chunkBytes = 32 << 20

    private let lock = NSLock()
    private var current: Chunk?
    private var used = 0

    /// A 2 MiB-aligned allocation of huge-page-advised memory.
    final class Chunk: @unchecked Sendable {
        let base: UnsafeMutableRawPointer
        let count: Int
        init(count: Int) {
            let size = (count + WeightArena.alignment - 1) / WeightArena.alignment * WeightArena.alignment
            var p: UnsafeMutableRawPointer?
            guard posix_memalign(&p, WeightArena.alignment, size) == 0, let p else {
                preconditionFailure("WeightArena: cannot allocate \(size) bytes")
            }
            #if os(Linux)
            _ = madvise(p, size, MADV_HUGEPAGE)   // a hint: without THP the memory is still fine
            #endif
            base = p
            self.count = size
        }
        deinit { free(base) }
    }

    /// `bytes` bytes, 64-byte aligned, in a chunk kept alive by the returned owner.
    func allocate(_ bytes: Int) -> (owner: Chunk, pointer: UnsafeMutableRawPointer) {
        let n = max(64, (bytes + 63) / 64 * 64)
        if n >= Self.chunkBytes / 2 {
            let c = Chunk(count: n)
            return (c, c.base)
        }
        lock.lock()
        defer { lock.unlock() }
        if current == nil || used + n > current!.count {
            current = Chunk(count: Self.chunkBytes)
            used = 0
        }
        let p = current!.base + used
        used += n
        return (current!, p)
    }

    /// Lets go of the partly used chunk (its matrices keep it alive as long as they live), so a
    /// later model starts a fresh one.
    func seal() {
        lock.lock()
        current = nil
        used = 0
        lock.unlock()
    }
}
