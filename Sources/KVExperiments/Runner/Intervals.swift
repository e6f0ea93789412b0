import Foundation

/// 95% intervals of the scores a run records (docs/results-schema.md, "Scores and their
/// intervals"): Wilson for accuracies (a 0/1 score per sample), Student's t for the mean of a
/// continuous per-sample score. Both are over samples: n is the number of task samples.
public enum Intervals {
    /// The 0.975 quantile of the standard normal distribution.
    public static let z975 = 1.959963984540054

    /// Wilson score interval for `successes` out of `n` trials (NaN for n = 0).
    public static func wilson(successes k: Double, n: Int, z: Double = z975) -> (lo: Double, hi: Double) {
        guard n > 0 else { return (.nan, .nan) }
        let nn = Double(n), p = k / nn, z2 = z * z
        let centre = (p + z2 / (2 * nn)) / (1 + z2 / nn)
        let half = z / (1 + z2 / nn) * (p * (1 - p) / nn + z2 / (4 * nn * nn)).squareRoot()
        return (max(0, centre - half), min(1, centre + half))
    }

    /// Student's t interval of the mean, mean ± t(0.975, n-1) s / sqrt(n), s the sample standard
    /// deviation; NaN bounds for fewer than two values.
    public static func t(_ xs: [Double], level: Double = 0.95) -> (mean: Double, lo: Double, hi: Double) {
        let n = xs.count
        guard n > 0 else { return (.nan, .nan, .nan) }
        let mean = xs.reduce(0, +) / Double(n)
        guard n > 1 else { return (mean, .nan, .nan) }
        let v = xs.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(n - 1)
        let half = studentQuantile(0.5 + level / 2, df: Double(n - 1)) * (v / Double(n)).squareRoot()
        return (mean, mean - half, mean + half)
    }

    /// The p-quantile (p in (0.5, 1)) of Student's t distribution with `df` degrees of freedom:
    /// bisection on the CDF, 1 - I_{df/(df+t^2)}(df/2, 1/2) / 2 for t > 0.
    public static func studentQuantile(_ p: Double, df: Double) -> Double {
        precondition(p > 0.5 && p < 1 && df > 0)
        func cdf(_ t: Double) -> Double { 1 - 0.5 * incompleteBeta(df / (df + t * t), a: df / 2, b: 0.5) }
        var lo = 0.0, hi = 1.0
        while cdf(hi) < p { hi *= 2 }
        for _ in 0..<200 {
            let mid = (lo + hi) / 2
            if cdf(mid) < p { lo = mid } else { hi = mid }
            if hi - lo < 1e-13 * max(1, hi) { break }
        }
        return (lo + hi) / 2
    }

    /// The regularized incomplete beta function I_x(a, b) (continued fraction, modified Lentz).
    static func incompleteBeta(_ x: Double, a: Double, b: Double) -> Double {
        if x <= 0 { return 0 }
        if x >= 1 { return 1 }
        let logBeta: Double = lgamma(a + b) - lgamma(a) - lgamma(b)
        let logPowers: Double = a * log(x) + b * log(1 - x)
        let front = exp(logBeta + logPowers)
        if x > (a + 1) / (a + b + 2) { return 1 - incompleteBeta(1 - x, a: b, b: a) }
        let tiny = 1e-300
        var c = 1.0, d = 1 - (a + b) * x / (a + 1)
        if abs(d) < tiny { d = tiny }
        d = 1 / d
        var f = d
        for m in 1...500 {
            let m = Double(m)
            var num = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
            d = 1 + num * d; if abs(d) < tiny { d = tiny }; d = 1 / d
            c = 1 + num / c; if abs(c) < tiny { c = tiny }
            f *= d * c
            num = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
            d = 1 + num * d; if abs(d) < tiny { d = tiny }; d = 1 / d
            c = 1 + num / c; if abs(c) < tiny { c = tiny }
            let delta = d * c
            f *= delta
            if abs(delta - 1) < 1e-15 { break }
        }
        return front * f / a
    }
}
