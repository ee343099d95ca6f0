//! Kubernetes quantities.
//!
//! This module deals with parsing `resource.Quantity` text exactly: `500m`, `1.5`, `128Mi`,
//! `1e3`, `2Gi`, `.5`, `+1k`. The value is returned as `mantissa × 10^exp10` with binary
//! suffixes multiplied out, so nothing is rounded (cgroup limits need exact bytes).

/// Parses a quantity; `None` if malformed or beyond ±9.2e18 units after scaling.
///
/// Overflow is as for the exact value in 128 bits: the digits' value and that value times
/// a binary suffix must stay within `i128`. The mantissa comes out normalised (no trailing
/// decimal zeros) without 128-bit division: the zeros are counted while reading, and a
/// binary suffix pairs its factors of two with the mantissa's factors of five.
pub fn parse(s: &str) -> Option<(i64, i8)> {
    const MAX: u128 = i128::MAX as u128;
    let b = s.as_bytes();
    let (neg, mut i) = match b.first() {
        Some(b'-') => (true, 1),
        Some(b'+') => (false, 1),
        _ => (false, 0),
    };
    // All digits' value; the value up to the last non-zero digit; the zeros after it.
    let (mut all, mut sig, mut zeros): (u128, u128, i32) = (0, 0, 0);
    let mut exp: i32 = 0;
    let mut digits = 0;
    let mut fraction = false;
    loop {
        match b.get(i) {
            Some(&c) if c.is_ascii_digit() => {
                all = all
                    .checked_mul(10)?
                    .checked_add(u128::from(c - b'0'))
                    .filter(|&v| v <= MAX)?;
                if c == b'0' {
                    zeros = zeros.saturating_add(1);
                } else {
                    (sig, zeros) = (all, 0);
                }
                if fraction {
                    exp -= 1;
                }
                digits += 1;
            }
            Some(b'.') if !fraction => fraction = true,
            _ => break,
        }
        i += 1;
    }
    if digits == 0 {
        return None;
    }
    let suffix = b.get(i..)?;
    let (bin_pow, dec_exp): (u32, i32) = match suffix {
        [b'e' | b'E', rest @ ..] => (0, exponent(rest)?),
        _ => scale(suffix)?,
    };
    all.checked_shl(bin_pow)
        .filter(|&v| v <= MAX && v >> bin_pow == all)?;
    exp = exp.checked_add(dec_exp)?;
    if sig == 0 {
        return Some((0, 0));
    }
    // `sig` ends in a non-zero digit: a factor of five in it (then it is odd) makes a
    // trailing zero only with one of the suffix's factors of two.
    let mut paired = 0;
    while paired < bin_pow {
        let (q, r) = divmod5(sig);
        if r != 0 {
            break;
        }
        sig = q;
        paired += 1;
    }
    let m = sig << (bin_pow - paired);
    exp = exp.checked_add(zeros)?.checked_add(paired as i32)?;
    let m = if neg {
        0i64.checked_sub_unsigned(u64::try_from(m).ok()?)?
    } else {
        i64::try_from(m).ok()?
    };
    Some((m, i8::try_from(exp).ok()?))
}

/// A suffix's binary power and decimal exponent (`Ki`: 2^10; `m`: 10^-3; none: 1).
fn scale(suffix: &[u8]) -> Option<(u32, i32)> {
    Some(match suffix {
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
        _ => return None,
    })
}

/// The `e`/`E` exponent's digits: an optional sign, then ASCII digits only.
fn exponent(rest: &[u8]) -> Option<i32> {
    let (neg, digits) = match rest {
        [b'-', d @ ..] => (true, d),
        [b'+', d @ ..] => (false, d),
        d => (false, d),
    };
    if digits.is_empty() {
        return None;
    }
    let mut v: i32 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        let d = i32::from(c - b'0');
        v = v.checked_mul(10)?.checked_add(if neg { -d } else { d })?;
    }
    Some(v)
}

/// `x / 5` and `x % 5` in 16-bit steps: 32-bit arithmetic only (the Cortex-M3 divides
/// 32-bit numbers itself; 64- and 128-bit division would link a software routine).
fn divmod5(x: u128) -> (u128, u32) {
    let (mut q, mut r) = (0u128, 0u32);
    for shift in (0..128).step_by(16).rev() {
        let cur = (r << 16) | u32::from((x >> shift) as u16);
        q |= u128::from(cur / 5) << shift;
        r = cur % 5;
    }
    (q, r)
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

    /// The straightforward 128-bit parse this module had (with the suffix table shared):
    /// the oracle for the one above.
    fn reference(s: &str) -> Option<(i64, i8)> {
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
            _ => super::scale(suffix)?,
        };
        mant = mant.checked_mul(1i128.checked_shl(bin_pow)?)?;
        exp = exp.checked_add(dec_exp)?;
        if neg {
            mant = -mant;
        }
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

    /// Agrees with the 128-bit reference on edge cases and on many generated quantities:
    /// overflow at `i128`, mantissas beyond `u64` that a binary suffix brings back, powers
    /// of five, signs, fractions, exponents.
    #[test]
    fn agrees_with_the_128_bit_reference() {
        extern crate std;
        use std::format;
        let fixed = [
            "37252902984619140625Pi",
            "931322574615478515625Ki",
            "931322574615478515625Ei",
            "170141183460469231731687303715884105727",
            "170141183460469231731687303715884105728",
            "1701411834604692317316873037158841057270",
            "-9223372036854775808",
            "-9223372036854775809",
            "9223372036854775807",
            "9223372036854775808",
            "-8Ei",
            "8Ei",
            "7.99Ei",
            "0.000Ki",
            "-0",
            "00000000000000000000000000000000000000000000000001",
            "1e127",
            "10e127",
            "1e128",
            "1e-128",
            "0.1e-127",
            "1e2147483647",
            "1e-2147483648",
            "1e+-1",
            "1e--1",
            "1e+",
            "1e2147483648",
            "5.",
            "+.5m",
            "1..2",
            "625Ki",
            "3125e3Mi",
            "0.0625Ki",
        ];
        for t in fixed {
            assert_eq!(parse(t), reference(t), "{t}");
        }
        let suffixes = [
            "", "n", "u", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
            "e3", "e-7", "E+2", "e", "x",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..200_000 {
            let mut t = std::string::String::new();
            match next() % 4 {
                0 => t.push('-'),
                1 => t.push('+'),
                _ => {}
            }
            // Digits with many fives and zeros, sometimes long enough to overflow.
            let len = next() % 45;
            let point = next() % 50;
            for k in 0..len {
                if k == point {
                    t.push('.');
                }
                t.push(b"0123455555000"[(next() % 13) as usize] as char);
            }
            if next() % 3 == 0 {
                t = format!("{}", 5u128.pow((next() % 55) as u32));
            }
            t.push_str(suffixes[(next() % suffixes.len() as u64) as usize]);
            assert_eq!(parse(&t), reference(&t), "{t}");
        }
    }
}
