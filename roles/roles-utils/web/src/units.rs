//! Numbers as people read them.

/// `12.3 TH/s`.
pub fn hashrate(hs: f64) -> String {
    let (value, unit) = scaled(hs);
    format!("{value:.2} {unit}H/s")
}

/// The value divided into its SI prefix, and the prefix.
pub fn scaled(v: f64) -> (f64, &'static str) {
    const PREFIXES: [&str; 7] = ["", "k", "M", "G", "T", "P", "E"];
    let mut v = if v.is_finite() { v.max(0.0) } else { 0.0 };
    let mut i = 0;
    while v >= 1000.0 && i < PREFIXES.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    (v, PREFIXES[i])
}

/// The SI prefix for the largest value of a series, and its divisor.
pub fn scale_for(max: f64) -> (f64, &'static str) {
    let (scaled, prefix) = scaled(max);
    let divisor = if scaled > 0.0 { max / scaled } else { 1.0 };
    (divisor, prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashrates_read_naturally() {
        assert_eq!(hashrate(0.0), "0.00 H/s");
        assert_eq!(hashrate(1_500.0), "1.50 kH/s");
        assert_eq!(hashrate(2.5e12), "2.50 TH/s");
        assert_eq!(hashrate(f64::NAN), "0.00 H/s");
        let (divisor, prefix) = scale_for(3.2e9);
        assert_eq!(prefix, "G");
        assert!((divisor - 1e9).abs() < 1.0);
    }
}
