//! Kubernetes quantities.
//!
//! This module deals with parsing `resource.Quantity` text exactly: `500m`, `1.5`, `128Mi`,
//! `1e3`, `2Gi`, `.5`, `+1k`. The value is returned as `mantissa × 10^exp10` with binary
//! suffixes multiplied out, so nothing is rounded (cgroup limits need exact bytes).

/// Parses a quantity; `None` if malformed or beyond ±9.2e18 units after scaling.
pub fn parse(s: &str) -> Option<(i64, i8)> {
    let b = s.as_bytes();
    let mut i = 0;
    let neg = match b.first() {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let mut mant: i128 = 0;
    let mut exp: i32 = 0;
    let mut digits = 0;
    while let Some(c) = b.get(i).filter(|c| c.is_ascii_digit()) {
        mant = mant.checked_mul(10)?.checked_add((c - b'0') as i128)?;
        digits += 1;
        i += 1;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        while let Some(c) = b.get(i).filter(|c| c.is_ascii_digit()) {
            mant = mant.checked_mul(10)?.checked_add((c - b'0') as i128)?;
            exp -= 1;
            digits += 1;
            i += 1;
        }
    }
    if digits == 0 {
        return None;
    }
    let suffix = b.get(i..)?;
    let (bin_pow, dec_exp): (u32, i32) = match suffix {
        b"" => (0, 0),
        b"n" => (0, -9),
        b"u" => (0, -6),
        b"m" => (0, -3),
        b"k" => (0, 3),
        b"M" => (0, 6),
        b"G" => (0, 9),
        b"T" => (0, 12),
        b"P" => (0, 15),
        b"E" => (0, 18),
        b"Ki" => (10, 0),
        b"Mi" => (20, 0),
        b"Gi" => (30, 0),
        b"Ti" => (40, 0),
        b"Pi" => (50, 0),
        b"Ei" => (60, 0),
        [b'e' | b'E', rest @ ..] => {
            let t = core::str::from_utf8(rest).ok()?;
            let valid = !t.is_empty()
                && t.trim_start_matches(['+', '-'])
                    .bytes()
                    .all(|c| c.is_ascii_digit())
                && t.trim_start_matches(['+', '-']).len() + 1 >= t.len();
            if !valid {
                return None;
            }
            (0, t.parse::<i32>().ok()?)
        }
        _ => return None,
    };
    mant = mant.checked_mul(1i128.checked_shl(bin_pow)?)?;
    exp = exp.checked_add(dec_exp)?;
    if neg {
        mant = -mant;
    }
    // Normalise: strip trailing zeros so equal values compare equal.
    while mant != 0 && mant % 10 == 0 {
        mant /= 10;
        exp += 1;
    }
    if mant == 0 {
        exp = 0;
    }
    let m = i64::try_from(mant).ok()?;
    let e = i8::try_from(exp).ok()?;
    Some((m, e))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn quantities_parse_exactly() {
        let table: &[(&str, Option<(i64, i8)>)] = &[
            ("500m", Some((5, -1))),
            ("0.5", Some((5, -1))),
            ("1", Some((1, 0))),
            ("1e3", Some((1, 3))),
            ("1E3", Some((1, 3))),
            ("1k", Some((1, 3))),
            ("128Mi", Some((134_217_728, 0))),
            ("1.5Gi", Some((1_610_612_736, 0))),
            ("2Gi", Some((2_147_483_648, 0))),
            (".5", Some((5, -1))),
            ("+1", Some((1, 0))),
            ("-100m", Some((-1, -1))),
            ("0", Some((0, 0))),
            ("100n", Some((1, -7))),
            ("1e-3", Some((1, -3))),
            ("", None),
            ("m", None),
            ("1x", None),
            ("1.2.3", None),
            ("1 Gi", None),
            ("1e", None),
            ("1e+-3", None),
            ("99999999999Ei", None),
        ];
        for (text, want) in table {
            assert_eq!(parse(text), *want, "{text}");
        }
    }
}
