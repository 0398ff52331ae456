//! Parameter decoding tests: binary input written by `postgres-types` (as tokio-postgres sends
//! it), text input as psql and drivers send it.

use bytes::BytesMut;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use rust_decimal::Decimal;
use tokio_postgres::types::{ToSql, Type};

use super::*;

fn bin<T: ToSql>(v: T, ty: &Type) -> Vec<u8> {
    let mut buf = BytesMut::new();
    v.to_sql(ty, &mut buf).expect("postgres-types writes it");
    buf.to_vec()
}

fn from_bin<T: ToSql>(v: T, ty: &Type, target: u32) -> Result<ScalarValue, DecodeError> {
    decode(Some(&bin(v, ty)), Format::Binary, ty.oid(), target)
}

fn text(s: &str, target: u32) -> Result<ScalarValue, DecodeError> {
    decode(Some(s.as_bytes()), Format::Text, 0, target)
}

fn code(r: Result<ScalarValue, DecodeError>) -> &'static str {
    r.expect_err("should fail").sqlstate
}

#[test]
fn nulls_are_typed() {
    assert_eq!(
        decode(None, Format::Binary, 0, oid::INT4),
        Ok(ScalarValue::Int32(None))
    );
    assert_eq!(
        decode(None, Format::Text, 0, oid::TEXT),
        Ok(ScalarValue::Utf8(None))
    );
    assert_eq!(
        decode(None, Format::Text, 0, oid::TIMESTAMPTZ),
        Ok(ScalarValue::TimestampMicrosecond(
            None,
            Some(Arc::from(UTC))
        ))
    );
}

#[test]
fn booleans() {
    assert_eq!(
        from_bin(true, &Type::BOOL, oid::BOOL),
        Ok(ScalarValue::Boolean(Some(true)))
    );
    for t in ["t", "TRUE", " yes ", "on", "1", "tr", "y"] {
        assert_eq!(
            text(t, oid::BOOL),
            Ok(ScalarValue::Boolean(Some(true))),
            "{t}"
        );
    }
    for f in ["f", "false", "no", "off", "0", "n"] {
        assert_eq!(
            text(f, oid::BOOL),
            Ok(ScalarValue::Boolean(Some(false))),
            "{f}"
        );
    }
    assert_eq!(code(text("o", oid::BOOL)), "22P02");
    assert_eq!(code(text("maybe", oid::BOOL)), "22P02");
}

#[test]
fn integers() {
    assert_eq!(
        from_bin(7i16, &Type::INT2, oid::INT2),
        Ok(ScalarValue::Int16(Some(7)))
    );
    assert_eq!(
        from_bin(-7i32, &Type::INT4, oid::INT4),
        Ok(ScalarValue::Int32(Some(-7)))
    );
    assert_eq!(
        from_bin(i64::MAX, &Type::INT8, oid::INT8),
        Ok(ScalarValue::Int64(Some(i64::MAX)))
    );
    // A client-declared int4 where int8 is expected, and the other way round.
    assert_eq!(
        from_bin(5i32, &Type::INT4, oid::INT8),
        Ok(ScalarValue::Int64(Some(5)))
    );
    assert_eq!(
        from_bin(5i64, &Type::INT8, oid::INT2),
        Ok(ScalarValue::Int16(Some(5)))
    );
    assert_eq!(code(from_bin(70_000i64, &Type::INT8, oid::INT2)), "22003");
    assert_eq!(
        from_bin(5i16, &Type::INT2, oid::NUMERIC),
        Ok(ScalarValue::Decimal128(Some(5), 38, 0))
    );

    assert_eq!(text(" 42 ", oid::INT4), Ok(ScalarValue::Int32(Some(42))));
    assert_eq!(
        text("-32768", oid::INT2),
        Ok(ScalarValue::Int16(Some(-32768)))
    );
    assert_eq!(code(text("32768", oid::INT2)), "22003");
    assert_eq!(code(text("12a", oid::INT8)), "22P02");
    assert_eq!(code(text("", oid::INT4)), "22P02");
    // Wrong binary length.
    assert_eq!(
        code(decode(Some(&[0, 1, 2]), Format::Binary, 0, oid::INT4)),
        "22P03"
    );
}

#[test]
fn floats() {
    assert_eq!(
        from_bin(1.5f64, &Type::FLOAT8, oid::FLOAT8),
        Ok(ScalarValue::Float64(Some(1.5)))
    );
    assert_eq!(
        from_bin(1.5f32, &Type::FLOAT4, oid::FLOAT4),
        Ok(ScalarValue::Float32(Some(1.5)))
    );
    assert_eq!(
        from_bin(1.5f32, &Type::FLOAT4, oid::FLOAT8),
        Ok(ScalarValue::Float64(Some(1.5)))
    );
    assert_eq!(
        text("1e300", oid::FLOAT8),
        Ok(ScalarValue::Float64(Some(1e300)))
    );
    assert_eq!(
        text("-Infinity", oid::FLOAT8),
        Ok(ScalarValue::Float64(Some(f64::NEG_INFINITY)))
    );
    assert!(matches!(text("NaN", oid::FLOAT4), Ok(ScalarValue::Float32(Some(v))) if v.is_nan()));
    assert_eq!(code(text("1e40", oid::FLOAT4)), "22003");
    assert_eq!(code(text("one", oid::FLOAT8)), "22P02");
}

#[test]
fn numerics() {
    let d: Decimal = "-123.4500".parse().expect("decimal");
    assert_eq!(
        from_bin(d, &Type::NUMERIC, oid::NUMERIC),
        Ok(ScalarValue::Decimal128(Some(-1_234_500), 38, 4))
    );
    let d: Decimal = "0.000001".parse().expect("decimal");
    assert_eq!(
        from_bin(d, &Type::NUMERIC, oid::NUMERIC),
        Ok(ScalarValue::Decimal128(Some(1), 38, 6))
    );
    let d: Decimal = "120000".parse().expect("decimal");
    assert_eq!(
        from_bin(d, &Type::NUMERIC, oid::NUMERIC),
        Ok(ScalarValue::Decimal128(Some(120_000), 38, 0))
    );
    assert_eq!(
        text("3.14", oid::NUMERIC),
        Ok(ScalarValue::Decimal128(Some(314), 38, 2))
    );
    assert_eq!(code(text("3.1.4", oid::NUMERIC)), "22P02");
}

#[test]
fn strings_and_bytes() {
    assert_eq!(
        from_bin("héllo", &Type::TEXT, oid::TEXT),
        Ok(ScalarValue::Utf8(Some("héllo".into())))
    );
    assert_eq!(
        from_bin("v", &Type::VARCHAR, oid::VARCHAR),
        Ok(ScalarValue::Utf8(Some("v".into())))
    );
    assert_eq!(
        code(decode(Some(&[0xff, 0xfe]), Format::Binary, 0, oid::TEXT)),
        "22021"
    );
    assert_eq!(
        from_bin(&[1u8, 2, 255][..], &Type::BYTEA, oid::BYTEA),
        Ok(ScalarValue::Binary(Some(vec![1, 2, 255])))
    );
    assert_eq!(
        text("\\x01FF", oid::BYTEA),
        Ok(ScalarValue::Binary(Some(vec![1, 255])))
    );
    assert_eq!(
        text("a\\\\b\\001", oid::BYTEA),
        Ok(ScalarValue::Binary(Some(b"a\\b\x01".to_vec())))
    );
    assert_eq!(code(text("\\x0", oid::BYTEA)), "22P02");
    // Text declared by the client where an integer is expected is parsed as text.
    assert_eq!(
        from_bin("12", &Type::TEXT, oid::INT4),
        Ok(ScalarValue::Int32(Some(12)))
    );
}

#[test]
fn json() {
    let v = serde_json::json!({"k": [1, "two"]});
    assert_eq!(
        from_bin(&v, &Type::JSONB, oid::JSONB),
        Ok(ScalarValue::Utf8(Some(r#"{"k":[1,"two"]}"#.into())))
    );
    assert_eq!(
        from_bin(&v, &Type::JSON, oid::JSON),
        Ok(ScalarValue::Utf8(Some(r#"{"k":[1,"two"]}"#.into())))
    );
    assert_eq!(
        code(decode(Some(&[2, b'1']), Format::Binary, 0, oid::JSONB)),
        "22P03"
    );
}

#[test]
fn dates_and_times() {
    let d = NaiveDate::from_ymd_opt(2024, 1, 31).expect("date");
    assert_eq!(
        from_bin(d, &Type::DATE, oid::DATE),
        Ok(ScalarValue::Date32(Some(19_753)))
    );
    assert_eq!(
        text("2024-01-31", oid::DATE),
        Ok(ScalarValue::Date32(Some(19_753)))
    );
    assert_eq!(code(text("2024-02-30", oid::DATE)), "22P02");

    let micros = 1_706_700_000_123_400_i64;
    let ts: NaiveDateTime = DateTime::from_timestamp_micros(micros)
        .expect("ts")
        .naive_utc();
    assert_eq!(
        from_bin(ts, &Type::TIMESTAMP, oid::TIMESTAMP),
        Ok(ScalarValue::TimestampMicrosecond(Some(micros), None))
    );
    assert_eq!(
        text("2024-01-31 11:20:00.1234", oid::TIMESTAMP),
        Ok(ScalarValue::TimestampMicrosecond(Some(micros), None))
    );
    let tz: DateTime<Utc> = DateTime::from_timestamp_micros(micros).expect("ts");
    let want = ScalarValue::TimestampMicrosecond(Some(micros), Some(Arc::from(UTC)));
    assert_eq!(
        from_bin(tz, &Type::TIMESTAMPTZ, oid::TIMESTAMPTZ),
        Ok(want.clone())
    );
    assert_eq!(
        text("2024-01-31 13:20:00.1234+02", oid::TIMESTAMPTZ),
        Ok(want)
    );
}

#[test]
fn uuids() {
    let u = uuid::Uuid::parse_str("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").expect("uuid");
    // The engine keeps uuids as canonical text.
    let want = ScalarValue::Utf8(Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".into()));
    assert_eq!(from_bin(u, &Type::UUID, oid::UUID), Ok(want.clone()));
    assert_eq!(
        text("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", oid::UUID),
        Ok(want)
    );
    assert_eq!(code(text("a0ee", oid::UUID)), "22P02");
    assert_eq!(
        code(decode(Some(&[1, 2]), Format::Binary, 0, oid::UUID)),
        "22P03"
    );
}

#[test]
fn time_and_interval() {
    let t = chrono::NaiveTime::from_hms_micro_opt(12, 34, 56, 789_000).expect("time");
    assert_eq!(
        from_bin(t, &Type::TIME, oid::TIME),
        Ok(ScalarValue::Time64Microsecond(Some(45_296_789_000)))
    );
    assert_eq!(
        text("12:34:56.789", oid::TIME),
        Ok(ScalarValue::Time64Microsecond(Some(45_296_789_000)))
    );
    let want = ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(
        14,
        3,
        14_706_000_000_000,
    )));
    assert_eq!(
        text("1 year 2 mons 3 days 04:05:06", oid::INTERVAL),
        Ok(want.clone())
    );
    let mut raw = Vec::new();
    raw.extend_from_slice(&14_706_000_000i64.to_be_bytes());
    raw.extend_from_slice(&3i32.to_be_bytes());
    raw.extend_from_slice(&14i32.to_be_bytes());
    assert_eq!(
        decode(Some(&raw), Format::Binary, 0, oid::INTERVAL),
        Ok(want)
    );
    assert_eq!(
        code(decode(Some(&raw[..8]), Format::Binary, 0, oid::INTERVAL)),
        "22P03"
    );
}

#[test]
fn arrays_in_text_and_binary() {
    let ints = |values: &[Option<i32>]| {
        ScalarValue::List(ScalarValue::new_list_nullable(
            &values
                .iter()
                .map(|v| ScalarValue::Int32(*v))
                .collect::<Vec<_>>(),
            &DataType::Int32,
        ))
    };
    assert_eq!(
        text("{1, 2,NULL}", 1007),
        Ok(ints(&[Some(1), Some(2), None]))
    );
    assert_eq!(text("{}", 1007), Ok(ints(&[])));
    assert_eq!(
        from_bin(vec![Some(5i32), None], &Type::INT4_ARRAY, 1007),
        Ok(ints(&[Some(5), None]))
    );
    // int2[] as sent, int4[] as the statement wants it.
    assert_eq!(
        from_bin(vec![7i16], &Type::INT2_ARRAY, 1007),
        Ok(ints(&[Some(7)]))
    );
    let texts = text(r#"{a,"b c","x\"y",NULL,"NULL"}"#, 1009).expect("text array");
    let ScalarValue::List(list) = texts else {
        panic!("a list: {texts:?}");
    };
    let values: Vec<Option<String>> = list
        .value(0)
        .as_any()
        .downcast_ref::<datafusion::arrow::array::StringArray>()
        .expect("strings")
        .iter()
        .map(|v| v.map(String::from))
        .collect();
    assert_eq!(
        values,
        vec![
            Some("a".into()),
            Some("b c".into()),
            Some("x\"y".into()),
            None,
            Some("NULL".into())
        ]
    );
    // numeric[] elements share the largest scale; timestamptz[] elements are UTC instants.
    let ScalarValue::List(list) = text("{1.5,2,NULL}", 1231).expect("numeric array") else {
        panic!("a list");
    };
    assert_eq!(list.value_type(), DataType::Decimal128(38, 1));
    let decimals = list
        .value(0)
        .as_any()
        .downcast_ref::<datafusion::arrow::array::Decimal128Array>()
        .expect("decimals")
        .iter()
        .collect::<Vec<_>>();
    assert_eq!(decimals, vec![Some(15), Some(20), None]);
    let ScalarValue::List(list) =
        text("{\"2020-01-02 03:04:05+00\"}", 1185).expect("timestamptz[]")
    else {
        panic!("a list");
    };
    assert_eq!(
        list.value_type(),
        DataType::Timestamp(
            datafusion::arrow::datatypes::TimeUnit::Microsecond,
            Some(UTC.into())
        )
    );
    assert_eq!(code(text("{not-a-uuid}", 2951)), "22P02");
    assert_eq!(code(text("{1,{2}}", 1007)), "22P02");
    assert_eq!(code(text("1,2", 1007)), "22P02");
    assert_eq!(code(text("{1,x}", 1007)), "22P02");
}
