// `kvlab report <file>`: the summary table of a results file, as aligned text or CSV.
import Foundation

public enum ResultsReport {
    /// Columns shown by `table` when none are asked for (those the file has, in this order).
    /// Every score is shown with its sample count and 95% interval; `setup` says which named setup
    /// a selection policy's parameters match (paper, kvlab, custom).
    public static let defaultColumns = ["index", "model", "task", "context", "label", "setup", "status", "score",
                                        "score_lo", "score_hi", "score_n", "kv_bytes_stored_peak", "kv_bytes_stored",
                                        "compression", "kv_bytes_read_per_step", "run_wall_s"]

    /// Every column of the file's summary: the fixed ones, the run's text facts (budget_kind,
    /// setup...), then the union of metric names in order of first appearance (runs sorted by index).
    public static func columns(_ file: ResultsFile) -> [String] {
        var names = ResultsSchema.fixedColumns
        var known = Set(names)
        for run in file.runs { for i in run.info where known.insert(i.name).inserted { names.append(i.name) } }
        for run in file.runs { for m in run.scalars where known.insert(m.name).inserted { names.append(m.name) } }
        return names
    }

    /// The asked columns (and sort column) that the file does not have: they are shown blank
    /// (`-` in the table, empty in CSV), e.g. a column that older files lack; `kvlab report`
    /// notes them on stderr with the valid ones.
    public static func missingColumns(_ file: ResultsFile, columns: [String]?, sortBy: String? = nil) -> [String] {
        let valid = Set(Self.columns(file))
        return ((columns ?? []) + (sortBy.map { [$0] } ?? [])).filter { !valid.contains($0) }
    }

    /// The summary as an aligned text table: one row per run, `columns` (default:
    /// `defaultColumns` that exist), sorted by `sortBy` (default: index; missing values and NaN
    /// last). A column the file does not have is shown blank (`-`).
    public static func table(_ file: ResultsFile, columns: [String]? = nil, sortBy: String? = nil,
                             descending: Bool = false) throws -> String {
        let valid = Self.columns(file)
        let shown = columns ?? defaultColumns.filter(valid.contains)
        let rows = sortedRows(file, columns: shown, sortBy: sortBy, descending: descending)
        let cells = rows.map { row in row.map(display) }
        var widths = shown.map(\.count)
        for row in cells { for (i, c) in row.enumerated() { widths[i] = max(widths[i], c.count) } }
        let numeric = shown.indices.map { i in rows.allSatisfy { $0[i].isNumericOrMissing } && !rows.isEmpty }
        func line(_ items: [String]) -> String {
            items.enumerated().map { i, s in
                let pad = String(repeating: " ", count: widths[i] - s.count)
                return numeric[i] ? pad + s : s + pad
            }.joined(separator: "  ").replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression)
        }
        var out = [line(shown), widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")]
        out += cells.map(line)
        return out.joined(separator: "\n") + "\n"
    }

    /// The summary as CSV (RFC 4180, header row first): `columns` default to all of them; numbers
    /// at full precision, missing values empty, NaN as `nan`.
    public static func csv(_ file: ResultsFile, columns: [String]? = nil, sortBy: String? = nil,
                           descending: Bool = false) throws -> String {
        let shown = columns ?? Self.columns(file)
        let rows = sortedRows(file, columns: shown, sortBy: sortBy, descending: descending)
        var out = [shown.map(csvField).joined(separator: ",")]
        out += rows.map { row in row.map { csvField($0.csvText) }.joined(separator: ",") }
        return out.joined(separator: "\n") + "\n"
    }

    // MARK: - Internals

    enum Cell {
        case int(Int), double(Double), text(String), missing

        var isNumericOrMissing: Bool { if case .text = self { return false }; return true }
        var number: Double? {
            switch self {
            case .int(let v): return Double(v)
            case .double(let v): return v.isNaN ? nil : v
            default: return nil
            }
        }
        var csvText: String {
            switch self {
            case .int(let v): return String(v)
            case .double(let v): return v.isNaN ? "nan" : "\(v)"
            case .text(let s): return s
            case .missing: return ""
            }
        }
    }

    static func cell(_ run: RunRecord, _ column: String) -> Cell {
        switch column {
        case "run": return .text(ResultsSchema.runName(run.index))
        case "index": return .int(run.index)
        case "key": return .text(run.key)
        case "model": return .text(run.modelID)
        case "task": return .text(run.taskKind)
        case "context": return .int(run.context)
        case "seed": return .int(run.seed)
        case "policy": return .text(run.policyKind)
        case "family": return .text(run.policyFamily)
        case "label": return .text(run.policyLabel)
        case "params": return .text(run.policyParams)
        case "status": return .text(run.status)
        default:
            if let v = run.scalar(column) { return .double(v) }
            return run.infoValue(column).map(Cell.text) ?? .missing
        }
    }

    static func sortedRows(_ file: ResultsFile, columns: [String], sortBy: String?, descending: Bool) -> [[Cell]] {
        var runs = file.runs.sorted { $0.index < $1.index }
        if let sortBy {
            let keyed = runs.map { (run: $0, cell: cell($0, sortBy)) }
            runs = keyed.sorted { a, b in
                switch (a.cell, b.cell) {
                case (.text(let x), .text(let y)) where x != y: return descending ? x > y : x < y
                default: break
                }
                let x = a.cell.number, y = b.cell.number
                if let x, let y, x != y { return descending ? x > y : x < y }
                if (x == nil) != (y == nil), a.cell.isNumericOrMissing, b.cell.isNumericOrMissing {
                    return x != nil          // missing and NaN last, either direction
                }
                return a.run.index < b.run.index
            }.map(\.run)
        }
        return runs.map { run in columns.map { cell(run, $0) } }
    }

    static func display(_ c: Cell) -> String {
        switch c {
        case .int(let v): return String(v)
        case .text(let s): return s
        case .missing: return "-"
        case .double(let v):
            if v.isNaN { return "nan" }
            if v.isInfinite { return v > 0 ? "inf" : "-inf" }
            if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
            if abs(v) >= 1000 { return String(format: "%.1f", v) }
            return String(format: "%.4g", v)
        }
    }

    static func csvField(_ s: String) -> String {
        guard s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return s }
        return "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}
