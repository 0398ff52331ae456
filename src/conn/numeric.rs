//! `numeric` on the wire: text, and the binary form of base-10000 digits.
//!
//! Binary layout: `ndigits:i16 weight:i16 sign:u16 dscale:u16` then `ndigits` base-10000 digits
//! (`i16`), most significant first; the value is `sum(digit[i] * 10000^(weight - i))`.

use bytes::{BufMut, BytesMut};

const SIGN_POS: u16 = 0x0000;
const SIGN_NEG: u16 = 0x4000;
const SIGN_NAN: u16 = 0xC000;
const SIGN_PINF: u16 = 0xD000;
const SIGN_NINF: u16 = 0xF000;

/// A decimal number split into its parts: `-int.frac`. Digit strings hold ASCII digits only.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Finite {
        negative: bool,
        int: String,
        frac: String,
    },
    NaN,
    Infinity {
        negative: bool,
    },
}

/// Text of an unscaled `i128` with `scale` digits after the point, like PostgreSQL prints it.
pub fn decimal_to_string(value: i128, scale: i8) -> String {
    let digits = value.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + 3);
    if value < 0 {
        out.push('-');
    }
    if scale <= 0 {
        out.push_str(&digits);
        if value != 0 {
            for _ in 0..(-i32::from(scale)) {
                out.push('0');
            }
        }
        return out;
    }
    let scale = scale as usize;
    if digits.len() <= scale {
        out.push_str("0.");
        for _ in digits.len()..scale {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let (int, frac) = digits.split_at(digits.len() - scale);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    }
    out
}

/// Parses numeric text: `[+-]digits[.digits][e[+-]digits]`, `NaN`, `[+-]Infinity`.
pub fn parse(s: &str) -> Option<Parsed> {
    let s = s.trim();
    let lower = s.to_ascii_lowercase();
    match lower.as_str() {
        "nan" => return Some(Parsed::NaN),
        "infinity" | "+infinity" | "inf" | "+inf" => {
            return Some(Parsed::Infinity { negative: false })
        }
        "-infinity" | "-inf" => return Some(Parsed::Infinity { negative: true }),
        _ => {}
    }
    let (negative, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut int = int.to_string();
    let mut frac = frac.to_string();
    if let Some(exp) = exp {
        let exp: i32 = exp.parse().ok()?;
        if exp.unsigned_abs() > 1000 {
            return None;
        }
        if exp > 0 {
            let n = exp as usize;
            while frac.len() < n {
                frac.push('0');
            }
            int.push_str(&frac[..n]);
            frac = frac[n..].to_string();
        } else if exp < 0 {
            let n = exp.unsigned_abs() as usize;
            while int.len() < n {
                int.insert(0, '0');
            }
            let moved = int.split_off(int.len() - n);
            frac = moved + &frac;
        }
    }
    let int = int.trim_start_matches('0').to_string();
    Some(Parsed::Finite {
        negative,
        int,
        frac,
    })
}

/// Binary `numeric` for a parsed value. `dscale` is the number of fractional digits shown.
pub fn to_binary(value: &Parsed, buf: &mut BytesMut) {
    let (negative, int, frac) = match value {
        Parsed::NaN => return put_header(buf, &[], 0, SIGN_NAN, 0),
        Parsed::Infinity { negative } => {
            let sign = if *negative { SIGN_NINF } else { SIGN_PINF };
            return put_header(buf, &[], 0, sign, 0);
        }
        Parsed::Finite {
            negative,
            int,
            frac,
        } => (*negative, int.as_str(), frac.as_str()),
    };
    let dscale = frac.len().min(u16::MAX as usize) as u16;
    let int_pad = (4 - int.len() % 4) % 4;
    let mut int_digits = "0".repeat(int_pad);
    int_digits.push_str(int);
    let mut frac_digits = frac.to_string();
    while !frac_digits.len().is_multiple_of(4) {
        frac_digits.push('0');
    }
    let group = |s: &str| -> Vec<i16> {
        s.as_bytes()
            .chunks(4)
            .map(|c| c.iter().fold(0i16, |acc, d| acc * 10 + i16::from(d - b'0')))
            .collect()
    };
    let int_groups = group(&int_digits);
    let mut weight = int_groups.len() as i32 - 1;
    let mut digits = int_groups;
    digits.extend(group(&frac_digits));
    let leading = digits.iter().take_while(|d| **d == 0).count();
    digits.drain(..leading);
    weight -= leading as i32;
    while digits.last() == Some(&0) {
        digits.pop();
    }
    if digits.is_empty() {
        return put_header(buf, &[], 0, SIGN_POS, dscale);
    }
    let sign = if negative { SIGN_NEG } else { SIGN_POS };
    let weight = weight.clamp(i16::MIN.into(), i16::MAX.into()) as i16;
    put_header(buf, &digits, weight, sign, dscale);
}

fn put_header(buf: &mut BytesMut, digits: &[i16], weight: i16, sign: u16, dscale: u16) {
    buf.put_i16(digits.len() as i16);
    buf.put_i16(weight);
    buf.put_u16(sign);
    buf.put_u16(dscale);
    for d in digits {
        buf.put_i16(*d);
    }
}

/// Reads binary `numeric`; `None` if malformed.
pub fn from_binary(bytes: &[u8]) -> Option<Parsed> {
    let word = |i: usize| -> Option<u16> {
        let b = bytes.get(i * 2..i * 2 + 2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    };
    let ndigits = word(0)? as i16;
    let weight = word(1)? as i16;
    let sign = word(2)?;
    let dscale = word(3)? as usize;
    if ndigits < 0 || bytes.len() != 8 + 2 * ndigits as usize {
        return None;
    }
    match sign {
        SIGN_NAN => return Some(Parsed::NaN),
        SIGN_PINF => return Some(Parsed::Infinity { negative: false }),
        SIGN_NINF => return Some(Parsed::Infinity { negative: true }),
        SIGN_POS | SIGN_NEG => {}
        _ => return None,
    }
    let mut int = String::new();
    let mut frac = String::new();
    for i in 0..ndigits as usize {
        let d = word(4 + i)?;
        if d > 9999 {
            return None;
        }
        let pos = i32::from(weight) - i as i32;
        let text = format!("{d:04}");
        if pos >= 0 {
            int.push_str(&text);
        } else {
            // Zero groups between the point and the first fractional digit.
            while (frac.len() as i32) < (-pos - 1) * 4 {
                frac.push('0');
            }
            frac.push_str(&text);
        }
    }
    // Integer groups below the last stored digit are zeros.
    let last_pos = i32::from(weight) - ndigits as i32 + 1;
    if ndigits > 0 && last_pos > 0 {
        for _ in 0..last_pos * 4 {
            int.push('0');
        }
    }
    while frac.len() < dscale {
        frac.push('0');
    }
    frac.truncate(dscale.max(frac.trim_end_matches('0').len()));
    let int = int.trim_start_matches('0').to_string();
    Some(Parsed::Finite {
        negative: sign == SIGN_NEG,
        int,
        frac,
    })
}

/// A finite value as an unscaled `i128` and its scale, for `Decimal128(38, scale)`.
pub fn to_i128(value: &Parsed) -> Option<(i128, u8)> {
    let Parsed::Finite {
        negative,
        int,
        frac,
    } = value
    else {
        return None;
    };
    let frac = frac.as_str();
    if int.len() + frac.len() > 38 {
        return None;
    }
    let digits = format!("{int}{frac}");
    let mut v: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    if *negative {
        v = -v;
    }
    Some((v, frac.len() as u8))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bin(s: &str) -> BytesMut {
        let mut b = BytesMut::new();
        to_binary(&parse(s).expect("parses"), &mut b);
        b
    }

    #[test]
    fn decimal_text() {
        assert_eq!(decimal_to_string(12345, 2), "123.45");
        assert_eq!(decimal_to_string(-5, 3), "-0.005");
        assert_eq!(decimal_to_string(150, 2), "1.50");
        assert_eq!(decimal_to_string(0, 2), "0.00");
        assert_eq!(decimal_to_string(7, 0), "7");
        assert_eq!(decimal_to_string(7, -2), "700");
        assert_eq!(decimal_to_string(i128::MIN, 0), i128::MIN.to_string());
    }

    #[test]
    fn binary_layout() {
        // 12.345: weight 0, digits [12, 3450], dscale 3
        assert_eq!(
            &bin("12.345")[..],
            &[0, 2, 0, 0, 0, 0, 0, 3, 0, 12, 0x0d, 0x7a][..]
        );
        // 0.0001: weight -1, digits [1]
        assert_eq!(
            &bin("0.0001")[..],
            &[0, 1, 0xff, 0xff, 0, 0, 0, 4, 0, 1][..]
        );
        // 10000: weight 1, digits [1]
        assert_eq!(&bin("10000")[..], &[0, 1, 0, 1, 0, 0, 0, 0, 0, 1][..]);
        assert_eq!(&bin("-0.00")[..], &[0, 0, 0, 0, 0, 0, 0, 2][..]);
        assert_eq!(&bin("NaN")[..], &[0, 0, 0, 0, 0xc0, 0, 0, 0][..]);
    }

    #[test]
    fn binary_round_trip() {
        for s in [
            "0",
            "1",
            "-1",
            "12.345",
            "0.0001",
            "10000",
            "123456789.000100",
            "-0.5",
            "1e3",
            "99999999999999999999.99999",
            "0.000000001",
        ] {
            let parsed = parse(s).expect("parses");
            let back = from_binary(&bin(s)).expect("decodes");
            assert_eq!(to_i128(&back), to_i128(&parsed), "{s}");
        }
        assert_eq!(from_binary(&bin("NaN")), Some(Parsed::NaN));
        assert_eq!(from_binary(&[0, 1, 0, 0]), None);
    }

    #[test]
    fn parse_forms() {
        assert_eq!(to_i128(&parse("1.5e2").expect("p")), Some((150, 0)));
        assert_eq!(to_i128(&parse("-2.5e-2").expect("p")), Some((-25, 3)));
        assert_eq!(to_i128(&parse(".5").expect("p")), Some((5, 1)));
        assert_eq!(parse("1.2.3"), None);
        assert_eq!(parse("abc"), None);
        assert_eq!(parse(""), None);
        assert!(to_i128(&parse(&"9".repeat(39)).expect("p")).is_none());
    }
}
