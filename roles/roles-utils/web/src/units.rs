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

/// A share difficulty: `1.23 k` and up with an SI prefix, `0.5`, or `1.23e-7` for the tiny
/// ones CPU miners mine.
pub fn difficulty(d: f64) -> String {
    if !d.is_finite() || d <= 0.0 {
        return "0".into();
    }
    if d >= 1000.0 {
        let (value, prefix) = scaled(d);
        format!("{value:.2} {prefix}")
    } else if d >= 0.001 {
        format!("{d:.3}")
    } else {
        format!("{d:.2e}")
    }
}

/// Satoshis as bitcoin, exactly: `3.12500000 BTC`.
pub fn sats_as_btc(sats: i64) -> String {
    let sign = if sats < 0 { "-" } else { "" };
    let abs = sats.unsigned_abs();
    format!("{sign}{}.{:08} BTC", abs / 100_000_000, abs % 100_000_000)
}

/// Unix milliseconds as `2024-05-01 12:34:56 UTC`.
pub fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// A length of time: `45 s`, `10 min`, `3 h`, `2 d` (whole units, rounded down).
pub fn span(secs: i64) -> String {
    match secs.max(0) {
        s if s < 120 => format!("{s} s"),
        s if s < 7_200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    }
}

/// How long ago `ms` was at `now_ms`: `12 s ago`, `5 min ago`, `3 h ago`, `2 d ago`.
pub fn ago(ms: i64, now_ms: i64) -> String {
    format!("{} ago", span(now_ms.saturating_sub(ms) / 1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn difficulties_times_and_ages_read_naturally() {
        assert_eq!(difficulty(0.0), "0");
        assert_eq!(difficulty(f64::NAN), "0");
        assert_eq!(difficulty(0.5), "0.500");
        assert_eq!(difficulty(1.5e-7), "1.50e-7");
        assert_eq!(difficulty(2_500_000.0), "2.50 M");
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000_123), "2023-11-14 22:13:20 UTC");
        assert_eq!(ago(1_000, 13_000), "12 s ago");
        assert_eq!(ago(0, 600_000), "10 min ago");
        assert_eq!(ago(0, 4 * 86_400_000), "4 d ago");
        assert_eq!(ago(5_000, 1_000), "0 s ago");
        assert_eq!(span(45), "45 s");
        assert_eq!(span(600), "10 min");
        assert_eq!(span(86_400), "24 h");
        assert_eq!(span(-3), "0 s");
    }

    #[test]
    fn rewards_read_as_bitcoin_to_the_satoshi() {
        assert_eq!(sats_as_btc(5_000_000_000), "50.00000000 BTC");
        assert_eq!(sats_as_btc(312_501_234), "3.12501234 BTC");
        assert_eq!(sats_as_btc(1), "0.00000001 BTC");
        assert_eq!(sats_as_btc(-150_000_000), "-1.50000000 BTC");
    }

    #[test]
    fn hashrates_read_naturally() {
        assert_eq!(hashrate(0.0), "0.00 H/s");
        assert_eq!(hashrate(1_500.0), "1.50 kH/s");
        assert_eq!(hashrate(2.5e12), "2.50 TH/s");
        assert_eq!(hashrate(f64::NAN), "0.00 H/s");
    }
}
