//! Byte encodings: memcomparable keys, rows by column id, the key layout and value header of the
//! `data` column family.

pub mod layout;
pub mod memcmp;
pub mod row;

#[cfg(test)]
mod tests;
