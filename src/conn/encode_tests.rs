//! Encoder tests: text output compared with what PostgreSQL prints, binary output read back with
//! `postgres-types` (the codec tokio-postgres uses).

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use datafusion::arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, FixedSizeBinaryArray,
    Float32Array, Float64Array, Int16Array, Int32Array, Int64Array, LargeStringArray, ListArray,
    StringArray, TimestampMicrosecondArray, TimestampNanosecondArray, UInt32Array,
};
use datafusion::arrow::datatypes::{Int32Type, Schema};
use rust_decimal::Decimal;
use tokio_postgres::types::{FromSql, Type};

use super::*;

fn batch(array: ArrayRef) -> RecordBatch {
    let schema = Schema::new(vec![Field::new("c", array.data_type().clone(), true)]);
    RecordBatch::try_new(Arc::new(schema), vec![array]).expect("valid batch")
}

/// Every row's single field: `None` for NULL.
fn cells(array: ArrayRef, oid: u32, format: Format) -> Vec<Option<Vec<u8>>> {
    let mut rows = Vec::new();
    RowEncoder::new(vec![(oid, format)])
        .encode(&batch(array), &mut rows)
        .expect("encodes");
    rows.iter()
        .map(|row| {
            assert_eq!(row.field_count, 1);
            let len = i32::from_be_bytes(row.data[..4].try_into().expect("4 bytes"));
            if len < 0 {
                None
            } else {
                assert_eq!(row.data.len(), 4 + len as usize);
                Some(row.data[4..].to_vec())
            }
        })
        .collect()
}

fn texts(array: ArrayRef, oid: u32) -> Vec<Option<String>> {
    cells(array, oid, Format::Text)
        .into_iter()
        .map(|c| c.map(|b| String::from_utf8(b).expect("utf8")))
        .collect()
}

fn binary<T: for<'a> FromSql<'a>>(array: ArrayRef, oid: u32, ty: &Type) -> Vec<Option<T>> {
    cells(array, oid, Format::Binary)
        .into_iter()
        .map(|c| c.map(|b| T::from_sql(ty, &b).expect("postgres-types reads it")))
        .collect()
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

#[test]
fn formats_resolve() {
    assert_eq!(resolve_formats(&[], 2), Ok(vec![Format::Text; 2]));
    assert_eq!(resolve_formats(&[1], 3), Ok(vec![Format::Binary; 3]));
    assert_eq!(
        resolve_formats(&[0, 1], 2),
        Ok(vec![Format::Text, Format::Binary])
    );
    assert!(resolve_formats(&[0, 1], 3).is_err());
    assert!(resolve_formats(&[2], 1).is_err());
}

#[test]
fn bool_and_ints() {
    let b: ArrayRef = Arc::new(BooleanArray::from(vec![Some(true), Some(false), None]));
    assert_eq!(texts(b.clone(), oid::BOOL), vec![s("t"), s("f"), None]);
    assert_eq!(
        binary::<bool>(b, oid::BOOL, &Type::BOOL),
        vec![Some(true), Some(false), None]
    );

    let i: ArrayRef = Arc::new(Int16Array::from(vec![i16::MIN, 0, i16::MAX]));
    assert_eq!(
        texts(i.clone(), oid::INT2),
        vec![s("-32768"), s("0"), s("32767")]
    );
    assert_eq!(
        binary::<i16>(i, oid::INT2, &Type::INT2),
        vec![Some(i16::MIN), Some(0), Some(i16::MAX)]
    );

    let i: ArrayRef = Arc::new(Int32Array::from(vec![i32::MIN, 7]));
    assert_eq!(
        binary::<i32>(i.clone(), oid::INT4, &Type::INT4),
        vec![Some(i32::MIN), Some(7)]
    );
    // An Int32 column reported as int8 is widened.
    assert_eq!(
        binary::<i64>(i, oid::INT8, &Type::INT8),
        vec![Some(i64::from(i32::MIN)), Some(7)]
    );

    let i: ArrayRef = Arc::new(Int64Array::from(vec![i64::MAX]));
    assert_eq!(texts(i.clone(), oid::INT8), vec![s("9223372036854775807")]);
    assert_eq!(
        binary::<i64>(i, oid::INT8, &Type::INT8),
        vec![Some(i64::MAX)]
    );

    let o: ArrayRef = Arc::new(UInt32Array::from(vec![u32::MAX, 1259]));
    assert_eq!(texts(o.clone(), oid::OID), vec![s("4294967295"), s("1259")]);
    assert_eq!(
        binary::<u32>(o, oid::OID, &Type::OID),
        vec![Some(u32::MAX), Some(1259)]
    );
    let o: ArrayRef = Arc::new(Int64Array::from(vec![2200]));
    assert_eq!(binary::<u32>(o, oid::OID, &Type::OID), vec![Some(2200)]);
}

#[test]
fn floats() {
    let f: ArrayRef = Arc::new(Float64Array::from(vec![
        0.1,
        1e20,
        f64::NAN,
        f64::NEG_INFINITY,
    ]));
    assert_eq!(
        texts(f.clone(), oid::FLOAT8),
        vec![s("0.1"), s("1e+20"), s("NaN"), s("-Infinity")]
    );
    let back = binary::<f64>(f, oid::FLOAT8, &Type::FLOAT8);
    assert_eq!(back[0], Some(0.1));
    assert!(back[2].is_some_and(f64::is_nan));
    let f: ArrayRef = Arc::new(Float32Array::from(vec![1.5f32, 1e7]));
    assert_eq!(texts(f.clone(), oid::FLOAT4), vec![s("1.5"), s("1e+07")]);
    assert_eq!(
        binary::<f32>(f, oid::FLOAT4, &Type::FLOAT4),
        vec![Some(1.5), Some(1e7)]
    );
}

#[test]
fn numeric() {
    let d: ArrayRef = Arc::new(
        Decimal128Array::from(vec![
            Some(12345),
            Some(-5),
            Some(0),
            None,
            Some(100_000_000),
        ])
        .with_precision_and_scale(20, 3)
        .expect("valid decimal"),
    );
    assert_eq!(
        texts(d.clone(), oid::NUMERIC),
        vec![s("12.345"), s("-0.005"), s("0.000"), None, s("100000.000")]
    );
    let back = binary::<Decimal>(d, oid::NUMERIC, &Type::NUMERIC);
    let want: Vec<Option<Decimal>> = ["12.345", "-0.005", "0.000", "", "100000.000"]
        .iter()
        .map(|v| (!v.is_empty()).then(|| v.parse().expect("decimal")))
        .collect();
    assert_eq!(back, want);
    // Integers reported as numeric.
    let i: ArrayRef = Arc::new(Int64Array::from(vec![-42]));
    assert_eq!(
        binary::<Decimal>(i, oid::NUMERIC, &Type::NUMERIC),
        vec![Some(Decimal::from(-42))]
    );
}

#[test]
fn text_types() {
    let t: ArrayRef = Arc::new(StringArray::from(vec![Some("héllo"), Some(""), None]));
    for oid in [oid::TEXT, oid::VARCHAR, oid::BPCHAR, oid::NAME] {
        assert_eq!(texts(t.clone(), oid), vec![s("héllo"), s(""), None]);
    }
    assert_eq!(
        binary::<String>(t, oid::TEXT, &Type::TEXT),
        vec![s("héllo"), s(""), None]
    );
    let t: ArrayRef = Arc::new(LargeStringArray::from(vec!["big"]));
    assert_eq!(
        binary::<String>(t, oid::VARCHAR, &Type::VARCHAR),
        vec![s("big")]
    );
}

#[test]
fn json_and_jsonb() {
    let j: ArrayRef = Arc::new(StringArray::from(vec![r#"{"a": [1, 2]}"#]));
    assert_eq!(texts(j.clone(), oid::JSONB), vec![s(r#"{"a": [1, 2]}"#)]);
    let v = binary::<serde_json::Value>(j.clone(), oid::JSONB, &Type::JSONB);
    assert_eq!(v, vec![Some(serde_json::json!({"a": [1, 2]}))]);
    let raw = cells(j.clone(), oid::JSONB, Format::Binary);
    assert_eq!(raw[0].as_ref().map(|b| b[0]), Some(1), "jsonb version byte");
    let v = binary::<serde_json::Value>(j, oid::JSON, &Type::JSON);
    assert_eq!(v, vec![Some(serde_json::json!({"a": [1, 2]}))]);
}

#[test]
fn bytea() {
    let b: ArrayRef = Arc::new(BinaryArray::from(vec![
        Some(&[0xde_u8, 0xad, 0x01][..]),
        Some(&[][..]),
    ]));
    assert_eq!(texts(b.clone(), oid::BYTEA), vec![s("\\xdead01"), s("\\x")]);
    assert_eq!(
        binary::<Vec<u8>>(b, oid::BYTEA, &Type::BYTEA),
        vec![Some(vec![0xde, 0xad, 0x01]), Some(vec![])]
    );
}

#[test]
fn dates_and_timestamps() {
    let d: ArrayRef = Arc::new(Date32Array::from(vec![0, 19_753, -800_000]));
    assert_eq!(
        texts(d.clone(), oid::DATE),
        vec![s("1970-01-01"), s("2024-01-31"), s("0222-09-04 BC")]
    );
    let back = binary::<NaiveDate>(d, oid::DATE, &Type::DATE);
    assert_eq!(back[1], NaiveDate::from_ymd_opt(2024, 1, 31));

    let micros = 1_706_700_000_123_400_i64;
    let t: ArrayRef = Arc::new(TimestampMicrosecondArray::from(vec![micros]));
    assert_eq!(
        texts(t.clone(), oid::TIMESTAMP),
        vec![s("2024-01-31 11:20:00.1234")]
    );
    let back = binary::<NaiveDateTime>(t, oid::TIMESTAMP, &Type::TIMESTAMP);
    assert_eq!(
        back[0].map(|t| t.and_utc().timestamp_micros()),
        Some(micros)
    );

    let tz: ArrayRef = Arc::new(TimestampMicrosecondArray::from(vec![micros]).with_timezone("UTC"));
    assert_eq!(
        texts(tz.clone(), oid::TIMESTAMPTZ),
        vec![s("2024-01-31 11:20:00.1234+00")]
    );
    let back = binary::<DateTime<Utc>>(tz, oid::TIMESTAMPTZ, &Type::TIMESTAMPTZ);
    assert_eq!(back[0].map(|t| t.timestamp_micros()), Some(micros));

    // Nanosecond timestamps are truncated to microseconds.
    let ns: ArrayRef = Arc::new(TimestampNanosecondArray::from(vec![1_999]));
    assert_eq!(
        texts(ns, oid::TIMESTAMP),
        vec![s("1970-01-01 00:00:00.000001")]
    );
}

#[test]
fn uuid() {
    let bytes: [u8; 16] = *uuid::Uuid::parse_str("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
        .expect("uuid")
        .as_bytes();
    let u: ArrayRef = Arc::new(
        FixedSizeBinaryArray::try_from_iter(vec![bytes.to_vec()].into_iter()).expect("fsb"),
    );
    assert_eq!(
        texts(u.clone(), oid::UUID),
        vec![s("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")]
    );
    assert_eq!(
        binary::<uuid::Uuid>(u, oid::UUID, &Type::UUID),
        vec![Some(uuid::Uuid::from_bytes(bytes))]
    );
    let u: ArrayRef = Arc::new(StringArray::from(vec![
        "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
    ]));
    assert_eq!(
        binary::<uuid::Uuid>(u, oid::UUID, &Type::UUID),
        vec![Some(uuid::Uuid::from_bytes(bytes))]
    );
}

#[test]
fn arrays() {
    let l: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
        Some(vec![Some(1), None, Some(3)]),
        Some(vec![]),
        None,
    ]));
    let int4_array = oid::array_of(oid::INT4).expect("int4[]");
    assert_eq!(
        texts(l.clone(), int4_array),
        vec![s("{1,NULL,3}"), s("{}"), None]
    );
    assert_eq!(
        binary::<Vec<Option<i32>>>(l, int4_array, &Type::INT4_ARRAY),
        vec![Some(vec![Some(1), None, Some(3)]), Some(vec![]), None]
    );
}

#[test]
fn unsupported_binary_is_an_error() {
    let i: ArrayRef = Arc::new(Int32Array::from(vec![1]));
    let mut rows = Vec::new();
    let e = RowEncoder::new(vec![(99_999, Format::Binary)])
        .encode(&batch(i.clone()), &mut rows)
        .expect_err("no binary form");
    assert_eq!(e.sqlstate, "0A000");
    // Text falls back to Arrow's display.
    assert_eq!(texts(i, 99_999), vec![s("1")]);
}

#[test]
fn time_and_interval() {
    use datafusion::arrow::array::{IntervalMonthDayNanoArray, Time64MicrosecondArray};
    use datafusion::arrow::datatypes::IntervalMonthDayNano;
    let t: ArrayRef = Arc::new(Time64MicrosecondArray::from(vec![45_296_789_000]));
    assert_eq!(texts(t.clone(), oid::TIME), vec![s("12:34:56.789")]);
    assert_eq!(
        binary::<chrono::NaiveTime>(t, oid::TIME, &Type::TIME),
        vec![chrono::NaiveTime::from_hms_micro_opt(12, 34, 56, 789_000)]
    );
    let iv: ArrayRef = Arc::new(IntervalMonthDayNanoArray::from(vec![
        IntervalMonthDayNano::new(14, 3, 14_706_000_000_000),
    ]));
    assert_eq!(
        texts(iv.clone(), oid::INTERVAL),
        vec![s("1 year 2 mons 3 days 04:05:06")]
    );
    let raw = cells(iv, oid::INTERVAL, Format::Binary);
    let mut want = Vec::new();
    want.extend_from_slice(&14_706_000_000i64.to_be_bytes());
    want.extend_from_slice(&3i32.to_be_bytes());
    want.extend_from_slice(&14i32.to_be_bytes());
    assert_eq!(raw, vec![Some(want)]);
}

#[test]
fn text_arrays_quote_like_postgres() {
    use datafusion::arrow::array::ListBuilder;
    use datafusion::arrow::array::StringBuilder;
    let mut b = ListBuilder::new(StringBuilder::new());
    b.values().append_value("plain");
    b.values().append_value("with space");
    b.values().append_value("");
    b.values().append_value("NULL");
    b.values().append_value("q\"b\\");
    b.values().append_null();
    b.append(true);
    let l: ArrayRef = Arc::new(b.finish());
    let text_array = oid::array_of(oid::TEXT).expect("text[]");
    assert_eq!(
        texts(l.clone(), text_array),
        vec![s(r#"{plain,"with space","","NULL","q\"b\\",NULL}"#)]
    );
    assert_eq!(
        binary::<Vec<Option<String>>>(l, text_array, &Type::TEXT_ARRAY),
        vec![Some(vec![
            s("plain"),
            s("with space"),
            s(""),
            s("NULL"),
            s("q\"b\\"),
            None
        ])]
    );
}
