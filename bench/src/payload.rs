//! Fields of a pushed JSON payload, read without a JSON parser: the benchmarks need one integer
//! of each notification, and parsing every payload in full would cost the client CPU that the
//! servers under test share.

/// The unsigned integer after `"key":` in a JSON payload (Weft writes `": "`, PostgreSQL `":"`).
/// Matches the first occurrence of the quoted key, at any depth.
pub fn int_field(payload: &[u8], key: &str) -> Option<u64> {
    // `"key":` without building it (no allocation per notification).
    let key = key.as_bytes();
    let n = key.len() + 3;
    let i = payload.windows(n).position(|w| {
        w[0] == b'"' && &w[1..n - 2] == key && w[n - 2] == b'"' && w[n - 1] == b':'
    })? + n;
    let digits = payload[i..].iter().skip_while(|b| **b == b' ');
    let mut v: u64 = 0;
    let mut any = false;
    for b in digits.take_while(|b| b.is_ascii_digit()) {
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        any = true;
    }
    any.then_some(v)
}

#[cfg(test)]
mod tests {
    use super::int_field;

    #[test]
    fn reads_both_servers_payloads() {
        let weft = br#"{"op": "insert", "row": {"id": 1, "sent_at": 42}}"#;
        assert_eq!(int_field(weft, "sent_at"), Some(42));
        assert_eq!(int_field(weft, "id"), Some(1));
        let pg = br#"{"id":1,"sent_at":1234567}"#;
        assert_eq!(int_field(pg, "sent_at"), Some(1_234_567));
        assert_eq!(int_field(b"nothing", "id"), None);
        // A key that only ends like the one asked for does not match.
        assert_eq!(int_field(br#"{"xid": 7}"#, "id"), None);
        assert_eq!(int_field(br#"{"id": 99999999999999999999999}"#, "id"), None);
    }
}
