//! Property tests: memcomparable keys sort like SQL and round-trip; rows round-trip and survive
//! added and dropped columns.

use std::cmp::Ordering;

use proptest::prelude::*;

use super::memcmp::{decode_value, encode_tuple, encode_value, skip_value};
use super::row::{encode_row, RowDecoder};
use crate::catalog::{ColumnDef, Consistency, TableDef};
use crate::types::{ArrayElem, DataType, Value};

fn data_type() -> impl Strategy<Value = DataType> {
    prop_oneof![
        Just(DataType::Bool),
        Just(DataType::Int16),
        Just(DataType::Int32),
        Just(DataType::Int64),
        Just(DataType::Float32),
        Just(DataType::Float64),
        Just(DataType::Numeric {
            precision: 38,
            scale: 4
        }),
        Just(DataType::Text),
        Just(DataType::Varchar(Some(10))),
        Just(DataType::Bytea),
        Just(DataType::Date),
        Just(DataType::Timestamp),
        Just(DataType::TimestampTz),
        Just(DataType::Uuid),
        Just(DataType::Jsonb),
        Just(DataType::Array(ArrayElem::Int32)),
        Just(DataType::Array(ArrayElem::Text)),
        Just(DataType::Array(ArrayElem::Float64)),
    ]
}

fn float64() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        Just(0.0),
        Just(-0.0),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        -3.0..3.0f64,
    ]
}

fn float32() -> impl Strategy<Value = f32> {
    prop_oneof![any::<f32>(), Just(-0.0f32), Just(f32::NAN), -3.0..3.0f32]
}

/// Short strings over a small alphabet (with NUL and 0xFF-ish bytes) so that prefixes and
/// equal values are common.
fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![Just('\0'), Just('a'), Just('b'), Just('ÿ'), any::<char>()],
        0..6,
    )
    .prop_map(|cs| cs.into_iter().collect())
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![Just(0u8), Just(1u8), Just(0xFFu8), any::<u8>()],
        0..6,
    )
}

fn value_of(ty: DataType) -> BoxedStrategy<Value> {
    let v: BoxedStrategy<Value> = match ty {
        DataType::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        DataType::Int16 => any::<i16>().prop_map(Value::Int16).boxed(),
        DataType::Int32 => prop_oneof![any::<i32>(), -3..3i32]
            .prop_map(Value::Int32)
            .boxed(),
        DataType::Int64 => prop_oneof![any::<i64>(), -3..3i64]
            .prop_map(Value::Int64)
            .boxed(),
        DataType::Float32 => float32().prop_map(Value::Float32).boxed(),
        DataType::Float64 => float64().prop_map(Value::Float64).boxed(),
        DataType::Numeric { .. } => prop_oneof![any::<i128>(), -3..3i128]
            .prop_map(Value::Numeric)
            .boxed(),
        DataType::Text | DataType::Varchar(_) | DataType::Char(_) | DataType::Jsonb => {
            text().prop_map(Value::Text).boxed()
        }
        DataType::Bytea => bytes().prop_map(Value::Bytes).boxed(),
        DataType::Date => any::<i32>().prop_map(Value::Date).boxed(),
        DataType::Timestamp => any::<i64>().prop_map(Value::Timestamp).boxed(),
        DataType::TimestampTz => any::<i64>().prop_map(Value::TimestampTz).boxed(),
        DataType::Uuid => any::<[u8; 16]>().prop_map(Value::Uuid).boxed(),
        DataType::Array(elem) => prop::collection::vec(value_of(elem.scalar()), 0..4)
            .prop_map(Value::Array)
            .boxed(),
    };
    prop_oneof![1 => Just(Value::Null), 6 => v].boxed()
}

fn typed_pair() -> impl Strategy<Value = (DataType, Value, Value)> {
    data_type().prop_flat_map(|ty| (Just(ty), value_of(ty), value_of(ty)))
}

/// Two tuples over the same column types.
fn tuple_pair() -> impl Strategy<Value = (Vec<DataType>, Vec<Value>, Vec<Value>)> {
    prop::collection::vec(data_type(), 1..4).prop_flat_map(|tys| {
        let a: Vec<_> = tys.iter().map(|t| value_of(*t)).collect();
        let b: Vec<_> = tys.iter().map(|t| value_of(*t)).collect();
        (Just(tys), a, b)
    })
}

/// PostgreSQL's order: NULLS LAST, NaN above every number, -0 = 0, text in the C collation.
fn sql_cmp(a: &Value, b: &Value) -> Ordering {
    fn float(a: f64, b: f64) -> Ordering {
        match (a.is_nan(), b.is_nan()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
        }
    }
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Greater,
        (_, Value::Null) => Ordering::Less,
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Int16(x), Value::Int16(y)) => x.cmp(y),
        (Value::Int32(x), Value::Int32(y)) => x.cmp(y),
        (Value::Int64(x), Value::Int64(y)) => x.cmp(y),
        (Value::Float32(x), Value::Float32(y)) => float(f64::from(*x), f64::from(*y)),
        (Value::Float64(x), Value::Float64(y)) => float(*x, *y),
        (Value::Numeric(x), Value::Numeric(y)) => x.cmp(y),
        (Value::Text(x), Value::Text(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Bytes(x), Value::Bytes(y)) => x.cmp(y),
        (Value::Date(x), Value::Date(y)) => x.cmp(y),
        (Value::Timestamp(x), Value::Timestamp(y)) => x.cmp(y),
        (Value::TimestampTz(x), Value::TimestampTz(y)) => x.cmp(y),
        (Value::Uuid(x), Value::Uuid(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => x
            .iter()
            .zip(y)
            .map(|(x, y)| sql_cmp(x, y))
            .find(|o| o.is_ne())
            .unwrap_or_else(|| x.len().cmp(&y.len())),
        _ => panic!("values of different types: {a:?} {b:?}"),
    }
}

/// What a key decodes back to: -0 becomes 0 and every NaN the canonical one.
fn key_normal(v: &Value) -> Value {
    match v {
        Value::Float64(f) if *f == 0.0 => Value::Float64(0.0),
        Value::Float32(f) if *f == 0.0 => Value::Float32(0.0),
        Value::Array(items) => Value::Array(items.iter().map(key_normal).collect()),
        other => other.clone(),
    }
}

/// Equality that treats NaNs of equal bits (or any NaN, for keys) as equal.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float64(x), Value::Float64(y)) => {
            x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())
        }
        (Value::Float32(x), Value::Float32(y)) => {
            x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        _ => a == b,
    }
}

fn enc(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode_value(&mut out, v);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn key_order_matches_sql((_ty, a, b) in typed_pair()) {
        prop_assert_eq!(enc(&a).cmp(&enc(&b)), sql_cmp(&a, &b), "{:?} vs {:?}", a, b);
    }

    #[test]
    fn key_round_trips((ty, a, _b) in typed_pair()) {
        let bytes = enc(&a);
        let mut buf = bytes.as_slice();
        let back = decode_value(&mut buf, ty).expect("decodes");
        prop_assert!(buf.is_empty());
        prop_assert!(same(&back, &key_normal(&a)), "{:?} -> {:?}", a, back);
        let mut buf = bytes.as_slice();
        skip_value(&mut buf).expect("skips");
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn tuple_order_and_prefixes((tys, a, b) in tuple_pair()) {
        let (mut ea, mut eb) = (Vec::new(), Vec::new());
        encode_tuple(&mut ea, &a);
        encode_tuple(&mut eb, &b);
        let sql = a.iter().zip(&b).map(|(x, y)| sql_cmp(x, y)).find(|o| o.is_ne()).unwrap_or(Ordering::Equal);
        prop_assert_eq!(ea.cmp(&eb), sql);
        // A column prefix encodes to a byte prefix.
        for n in 0..=a.len() {
            let mut p = Vec::new();
            encode_tuple(&mut p, &a[..n]);
            prop_assert!(ea.starts_with(&p));
        }
        let mut buf = ea.as_slice();
        for (ty, v) in tys.iter().zip(&a) {
            let back = decode_value(&mut buf, *ty).expect("decodes");
            prop_assert!(same(&back, &key_normal(v)));
        }
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn row_round_trips(cols in prop::collection::vec(data_type(), 1..8).prop_flat_map(|tys| {
        let vals: Vec<_> = tys.iter().map(|t| value_of(*t)).collect();
        (Just(tys), vals)
    }), drop_mask in any::<u8>()) {
        let (tys, row) = cols;
        let table = table_of(&tys);
        let bytes = encode_row(&table, &row).expect("encodes");
        let back = RowDecoder::new(&table, None).expect("decoder").decode(&bytes).expect("decodes");
        prop_assert_eq!(back.len(), row.len());
        for (x, y) in back.iter().zip(&row) {
            prop_assert!(same(x, y), "{:?} != {:?}", x, y);
        }

        // Drop some columns and add one: the old bytes still decode.
        let mut altered = table.clone();
        let kept: Vec<usize> = (0..tys.len()).filter(|i| drop_mask & (1 << (i % 8)) == 0).collect();
        altered.columns = kept.iter().map(|&i| table.columns[i].clone()).collect();
        altered.columns.push(column(99, DataType::Int32));
        let back = RowDecoder::new(&altered, None).expect("decoder").decode(&bytes).expect("decodes");
        prop_assert_eq!(back.len(), kept.len() + 1);
        for (slot, &i) in kept.iter().enumerate() {
            prop_assert!(same(&back[slot], &row[i]));
        }
        prop_assert_eq!(&back[kept.len()], &Value::Null);

        // A projection, reversed.
        let proj: Vec<usize> = (0..tys.len()).rev().collect();
        let back = RowDecoder::new(&table, Some(&proj)).expect("decoder").decode(&bytes).expect("decodes");
        for (slot, &i) in proj.iter().enumerate() {
            prop_assert!(same(&back[slot], &row[i]));
        }
    }
}

fn column(id: u32, ty: DataType) -> ColumnDef {
    ColumnDef {
        id,
        name: format!("c{id}"),
        data_type: ty,
        nullable: true,
        default: None,
        hidden: false,
        identity: None,
    }
}

fn table_of(tys: &[DataType]) -> TableDef {
    TableDef {
        id: 1,
        name: "t".into(),
        // Ids deliberately not in position order.
        columns: tys
            .iter()
            .enumerate()
            .map(|(i, t)| column((i as u32 * 7) % 50 + 1, *t))
            .collect(),
        primary_key: vec![0],
        pkey_name: "t_pkey".into(),
        indexes: vec![],
        checks: vec![],
        consistency: Consistency::Raft,
        foreign_keys: Vec::new(),
        comments: Default::default(),
        next_column_id: 100,
    }
}

#[test]
fn rejects_a_row_of_the_wrong_shape() {
    let table = table_of(&[DataType::Int32, DataType::Text]);
    assert!(encode_row(&table, &[Value::Int32(1)]).is_err());
    assert!(encode_row(&table, &[Value::Int64(1), Value::Null]).is_err());
    assert!(RowDecoder::new(&table, None)
        .expect("decoder")
        .decode(&[1, 0xFF])
        .is_err());
}
