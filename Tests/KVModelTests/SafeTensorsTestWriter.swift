import Foundation

/// Writes safetensors files byte by byte, so tests can build valid and deliberately broken ones.
struct SafeTensorsTestWriter {
    struct Entry { var name: String; var dtype: String; var shape: [Int]; var data: Data }

    /// Serialises entries; `headerOverride` replaces the JSON header, `lengthOverride` the 8-byte length.
    static func write(_ entries: [Entry], to url: URL, headerOverride: String? = nil, lengthOverride: UInt64? = nil) throws {
        var offset = 0
        var parts: [String] = []
        for e in entries {
            parts.append("\"\(e.name)\":{\"dtype\":\"\(e.dtype)\",\"shape\":\(e.shape),\"data_offsets\":[\(offset),\(offset + e.data.count)]}")
            offset += e.data.count
        }
        var header = headerOverride ?? "{" + parts.joined(separator: ",") + "}"
        while header.utf8.count % 8 != 0 { header += " " }
        var out = Data()
        var len = (lengthOverride ?? UInt64(header.utf8.count)).littleEndian
        withUnsafeBytes(of: &len) { out.append(contentsOf: $0) }
        out.append(header.data(using: .utf8)!)
        for e in entries { out.append(e.data) }
        try out.write(to: url)
    }

    /// Reads back a valid file's entries (for copying a fixture with modifications).
    static func read(_ url: URL) throws -> [Entry] {
        let data = try Data(contentsOf: url)
        let n = Int(data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        let json = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + n))) as! [String: Any]
        return json.compactMap { name, v -> Entry? in
            guard let d = v as? [String: Any], let offs = d["data_offsets"] as? [Int] else { return nil }
            return Entry(name: name, dtype: d["dtype"] as! String, shape: d["shape"] as! [Int],
                         data: data.subdata(in: (8 + n + offs[0])..<(8 + n + offs[1])))
        }.sorted { $0.name < $1.name }
    }
}
