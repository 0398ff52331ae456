//! Float text output as PostgreSQL 12+ prints it (`extra_float_digits = 1`): the shortest
//! string that reads back to the same value, in fixed notation for decimal exponents in
//! `-4..15` (`float8`) or `-4..6` (`float4`), otherwise `1.5e+20` style.

/// `float8` text.
pub fn float8(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    shortest(&format!("{v:e}"), 15)
}

/// `float4` text.
pub fn float4(v: f32) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    shortest(&format!("{v:e}"), 6)
}

/// Reformats Rust's shortest round-trip `LowerExp` output (`-1.2345e3`).
fn shortest(sci: &str, max_fixed_exp: i32) -> String {
    let (negative, sci) = match sci.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, sci),
    };
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::with_capacity(digits.len() + 8);
    if negative {
        out.push('-');
    }
    if digits == "0" {
        out.push('0');
        return out;
    }
    if (-4..max_fixed_exp).contains(&exp) {
        if exp >= 0 {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                out.push_str(&digits);
                out.extend(std::iter::repeat_n('0', int_len - digits.len()));
            } else {
                out.push_str(&digits[..int_len]);
                out.push('.');
                out.push_str(&digits[int_len..]);
            }
        } else {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
            out.push_str(&digits);
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.unsigned_abs()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float8_like_postgres() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (-1.5, "-1.5"),
            (0.1, "0.1"),
            (100.0, "100"),
            (123456789012345.0, "123456789012345"),
            (1e15, "1e+15"),
            (1.5e300, "1.5e+300"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.25e-7, "1.25e-07"),
            (std::f64::consts::PI, "3.141592653589793"),
            (f64::MAX, "1.7976931348623157e+308"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (f64::NAN, "NaN"),
        ];
        for (v, want) in cases {
            assert_eq!(float8(*v), *want, "{v:e}");
            if v.is_finite() {
                assert_eq!(float8(*v).parse::<f64>().expect("parses"), *v);
            }
        }
    }

    #[test]
    fn float4_like_postgres() {
        let cases: &[(f32, &str)] = &[
            (1.0, "1"),
            (0.1, "0.1"),
            (100000.0, "100000"),
            (1000000.0, "1e+06"),
            (1.5e-5, "1.5e-05"),
            (3.4028235e38, "3.4028235e+38"),
            (f32::NAN, "NaN"),
        ];
        for (v, want) in cases {
            assert_eq!(float4(*v), *want, "{v:e}");
        }
    }
}
