//! Arrays: text `{a,b,NULL}` (nested lists as `{{1},{2}}`) and the one-dimensional binary array
//! format, element by element through the scalar encoders.

use bytes::{BufMut, BytesMut};
use datafusion::arrow::array::{Array, AsArray};

use super::encode::{err, mismatch, put_cell, put_text, EncodeError, Format};
use super::oid;

/// `{1,2,NULL,"a b"}`: elements in text form, quoted where PostgreSQL quotes them.
pub fn text(array: &dyn Array, row: usize, oid: u32) -> Result<String, EncodeError> {
    let list = array
        .as_list_opt::<i32>()
        .ok_or_else(|| mismatch(array.data_type()))?;
    let element = oid::array_element(oid).unwrap_or(oid::TEXT);
    let values = list.value(row);
    // int2vector and oidvector: `1 2`, as PostgreSQL's int2vectorout and oidvectorout.
    if matches!(oid, oid::INT2VECTOR | oid::OIDVECTOR) {
        let mut out = String::new();
        for i in 0..values.len() {
            if i > 0 {
                out.push(' ');
            }
            let mut item = BytesMut::new();
            put_text(values.as_ref(), i, element, &mut item)?;
            out.push_str(&String::from_utf8_lossy(&item));
        }
        return Ok(out);
    }
    let mut out = String::from("{");
    for i in 0..values.len() {
        if i > 0 {
            out.push(',');
        }
        if values.is_null(i) {
            out.push_str("NULL");
            continue;
        }
        // A list of lists (`array_agg` of an array column) is PostgreSQL's `{{1,2},{3,4}}`.
        if values.as_list_opt::<i32>().is_some() {
            out.push_str(&text(values.as_ref(), i, oid)?);
            continue;
        }
        let mut item = BytesMut::new();
        put_text(values.as_ref(), i, element, &mut item)?;
        push_element(&mut out, &String::from_utf8_lossy(&item), false);
    }
    out.push('}');
    Ok(out)
}

pub(super) use weft_sql::array_text::push_element;

/// One-dimensional array: ndim, has-nulls flag, element oid, (length, lower bound 1), elements.
pub fn binary(
    array: &dyn Array,
    row: usize,
    oid: u32,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    let list = array
        .as_list_opt::<i32>()
        .ok_or_else(|| mismatch(array.data_type()))?;
    let element = oid::array_element(oid).unwrap_or(oid::TEXT);
    let values = list.value(row);
    let len = i32::try_from(values.len()).map_err(|_| err("54000", "array too large"))?;
    if len == 0 {
        buf.put_i32(0);
        buf.put_i32(0);
        buf.put_u32(element);
        return Ok(());
    }
    buf.put_i32(1);
    buf.put_i32(i32::from(values.null_count() > 0));
    buf.put_u32(element);
    buf.put_i32(len);
    buf.put_i32(1);
    for i in 0..values.len() {
        put_cell(values.as_ref(), i, element, Format::Binary, buf)?;
    }
    Ok(())
}
