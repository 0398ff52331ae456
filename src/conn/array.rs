//! Arrays: text `{a,b,NULL}` (nested lists as `{{1},{2}}`) and the binary array format (nested
//! lists as a multidimensional array), element by element through the scalar encoders.

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

/// ndim, has-nulls flag, element oid, (length, lower bound 1) per dimension, then the elements.
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
    let mut values = list.value(row);
    // A list of lists (`array_agg` of an array column): dimensions outermost first, elements
    // in row-major order, as PostgreSQL's array_send writes a multidimensional array.
    let mut dims = vec![values.len()];
    loop {
        let Some(inner) = values.as_list_opt::<i32>() else {
            break;
        };
        let offsets = inner.value_offsets();
        let width = offsets.get(1).map_or(0, |end| end - offsets[0]);
        if inner.null_count() > 0 || offsets.windows(2).any(|w| w[1] - w[0] != width) {
            return Err(err(
                "2202E",
                "multidimensional arrays must have array expressions with matching dimensions",
            ));
        }
        dims.push(usize::try_from(width).unwrap_or(0));
        let start = usize::try_from(offsets[0]).unwrap_or(0);
        let end = usize::try_from(offsets[inner.len()]).unwrap_or(start);
        let flat = inner.values().slice(start, end - start);
        values = flat;
    }
    if values.is_empty() {
        buf.put_i32(0);
        buf.put_i32(0);
        buf.put_u32(element);
        return Ok(());
    }
    let ndim = i32::try_from(dims.len()).map_err(|_| err("54000", "array too large"))?;
    buf.put_i32(ndim);
    buf.put_i32(i32::from(values.null_count() > 0));
    buf.put_u32(element);
    for d in dims {
        buf.put_i32(i32::try_from(d).map_err(|_| err("54000", "array too large"))?);
        buf.put_i32(1);
    }
    for i in 0..values.len() {
        put_cell(values.as_ref(), i, element, Format::Binary, buf)?;
    }
    Ok(())
}
