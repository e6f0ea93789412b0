import XCTest
@testable import KVExperiments

/// The score intervals against statsmodels 0.15.0 / scipy 1.17.1, computed independently with
/// (python3 in a venv with statsmodels):
///
///     from statsmodels.stats.proportion import proportion_confint
///     from scipy import stats; import numpy as np
///     proportion_confint(k, n, alpha=0.05, method='wilson')
///     a = np.array(xs); stats.t.interval(0.95, len(a) - 1, loc=a.mean(), scale=stats.sem(a))
///     stats.t.ppf(0.975, df)
final class IntervalTests: XCTestCase {
    func testWilsonMatchesStatsmodels() {
        let expected: [(Int, Int, Double, Double)] = [
            (6, 10, 0.31267376973365824, 0.8318196702937638),
            (0, 10, 0.0, 0.27753279986288926),
            (10, 10, 0.7224672001371106, 1.0),
            (1, 4, 0.0455872608097006, 0.6993581574175982),
            (37, 50, 0.6044684273515116, 0.841284725064476),
        ]
        for (k, n, lo, hi) in expected {
            let w = Intervals.wilson(successes: Double(k), n: n)
            XCTAssertEqual(w.lo, lo, accuracy: 1e-12, "\(k)/\(n)")
            XCTAssertEqual(w.hi, hi, accuracy: 1e-12, "\(k)/\(n)")
        }
        XCTAssertTrue(Intervals.wilson(successes: 0, n: 0).lo.isNaN)
    }

    func testStudentTMatchesScipy() {
        let quantiles: [(Double, Double)] = [(1, 12.706204736174694), (2, 4.302652729749462), (9, 2.262157162798205),
                                             (29, 2.045229642132703), (1000, 1.9623390808264083)]
        for (df, q) in quantiles { XCTAssertEqual(Intervals.studentQuantile(0.975, df: df), q, accuracy: 1e-9, "df \(df)") }
        let cases: [([Double], Double, Double, Double)] = [
            ([0.5, 0.75, 1.0, 0.25], 0.625, 0.11143493580986985, 1.1385650641901301),
            ([-0.0123, -0.0311, 0.0042, -0.0208, -0.0156, -0.0087], -0.01405, -0.026497341924105126, -0.0016026580758948736),
            ([0.9, 0.8], 0.8500000000000001, 0.21468976319126554, 1.4853102368087345),
        ]
        for (xs, mean, lo, hi) in cases {
            let t = Intervals.t(xs)
            XCTAssertEqual(t.mean, mean, accuracy: 1e-12)
            XCTAssertEqual(t.lo, lo, accuracy: 1e-10, "\(xs)")
            XCTAssertEqual(t.hi, hi, accuracy: 1e-10, "\(xs)")
        }
        let one = Intervals.t([0.4])
        XCTAssertEqual(one.mean, 0.4)
        XCTAssertTrue(one.lo.isNaN && one.hi.isNaN, "one sample has no interval")
    }

    func testRunScoreIntervalPicksWilsonForAccuracies() {
        let acc = RunFractions.interval([1, 0, 1, 1, 0, 1, 0, 1, 1, 0], kind: .passkey)
        XCTAssertEqual(acc.map(\.name), ["score_n", "score_lo", "score_hi"])
        XCTAssertEqual(acc[0].value, 10)
        XCTAssertEqual(acc[1].value, 0.31267376973365824, accuracy: 1e-12)
        let recall = RunFractions.interval([0.5, 0.75, 1.0, 0.25], kind: .niahMultivalue)
        XCTAssertEqual(recall[1].value, 0.11143493580986985, accuracy: 1e-10)
    }
}
