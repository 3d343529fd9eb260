//! The flat wire: a value made only of numbers, `bool`s and `char`s — in tuples, arrays,
//! structs and newtypes, nested as deep as one likes — written as those fields' fixed-width
//! little-endian bytes, one after another, with nothing else.
//!
//! A pool's chunk of such items (the `u64`s of `pool.map(f, 0..n)`, a `(f64, f64)` point, a
//! `#[derive(Serialize)]` struct of numbers) is encoded and decoded at close to the speed of a
//! copy: no varints, no lengths, no tags, every item the same size. Anything else — a string, a
//! `Vec`, an `Option`, an enum, a map, a skipped field — is refused with [`NotFlat`], and the
//! caller uses postcard instead. Which wire a chunk took travels with it.
//!
//! Every item of a flat chunk must come out the same size (the first item's); a `Serialize`
//! whose shape depends on the value breaks that, and the caller then goes back to postcard for
//! the rest. The reader refuses input that is short or left over, so a mismatch between a type's
//! `Serialize` and `Deserialize` is an error, never a wrong value.

use std::fmt;

use serde::de::{self, DeserializeOwned, Visitor};
use serde::ser::{self, Serialize};

/// The value is not flat (or flat bytes did not decode as one).
#[derive(Debug)]
pub(crate) struct NotFlat(String);

impl fmt::Display for NotFlat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotFlat {}

impl ser::Error for NotFlat {
    fn custom<M: fmt::Display>(message: M) -> NotFlat {
        NotFlat(message.to_string())
    }
}

impl de::Error for NotFlat {
    fn custom<M: fmt::Display>(message: M) -> NotFlat {
        NotFlat(message.to_string())
    }
}

fn refuse<T>(what: &str) -> Result<T, NotFlat> {
    Err(NotFlat(format!("{what} is not flat")))
}

/// Appends `value`'s flat encoding to `out`. On error `out` may hold part of it; callers
/// truncate.
#[inline]
pub(crate) fn append<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), NotFlat> {
    value.serialize(&mut Writer { out })
}

/// Decodes the whole of `bytes` as a flat `T`.
#[inline]
pub(crate) fn read<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, NotFlat> {
    let mut reader = Reader { input: bytes };
    let value = T::deserialize(&mut reader)?;
    if !reader.input.is_empty() {
        return Err(NotFlat(format!("{} bytes left over", reader.input.len())));
    }
    Ok(value)
}

struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

macro_rules! write_le {
    ($($method:ident: $ty:ty),* $(,)?) => {$(
        #[inline]
        fn $method(self, v: $ty) -> Result<(), NotFlat> {
            self.out.extend_from_slice(&v.to_le_bytes());
            Ok(())
        }
    )*};
}

impl<'a> ser::Serializer for &mut Writer<'a> {
    type Ok = ();
    type Error = NotFlat;
    type SerializeSeq = ser::Impossible<(), NotFlat>;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = ser::Impossible<(), NotFlat>;
    type SerializeMap = ser::Impossible<(), NotFlat>;
    type SerializeStruct = Self;
    type SerializeStructVariant = ser::Impossible<(), NotFlat>;

    write_le!(
        serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64, serialize_i128: i128,
        serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64, serialize_u128: u128,
        serialize_f32: f32, serialize_f64: f64,
    );

    #[inline]
    fn serialize_bool(self, v: bool) -> Result<(), NotFlat> {
        self.out.push(u8::from(v));
        Ok(())
    }

    #[inline]
    fn serialize_char(self, v: char) -> Result<(), NotFlat> {
        self.serialize_u32(u32::from(v))
    }

    fn serialize_str(self, _: &str) -> Result<(), NotFlat> {
        refuse("a string")
    }

    fn serialize_bytes(self, _: &[u8]) -> Result<(), NotFlat> {
        refuse("a byte string")
    }

    fn serialize_none(self) -> Result<(), NotFlat> {
        refuse("an Option")
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), NotFlat> {
        refuse("an Option")
    }

    #[inline]
    fn serialize_unit(self) -> Result<(), NotFlat> {
        Ok(())
    }

    #[inline]
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), NotFlat> {
        Ok(())
    }

    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result<(), NotFlat> {
        refuse("an enum")
    }

    #[inline]
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Result<(), NotFlat> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), NotFlat> {
        refuse("an enum")
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, NotFlat> {
        refuse("a sequence")
    }

    #[inline]
    fn serialize_tuple(self, _: usize) -> Result<Self, NotFlat> {
        Ok(self)
    }

    #[inline]
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, NotFlat> {
        Ok(self)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, NotFlat> {
        refuse("an enum")
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, NotFlat> {
        refuse("a map")
    }

    #[inline]
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, NotFlat> {
        Ok(self)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, NotFlat> {
        refuse("an enum")
    }

    fn collect_str<T: fmt::Display + ?Sized>(self, _: &T) -> Result<(), NotFlat> {
        refuse("a string")
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

impl ser::SerializeTuple for &mut Writer<'_> {
    type Ok = ();
    type Error = NotFlat;

    #[inline]
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), NotFlat> {
        value.serialize(&mut **self)
    }

    #[inline]
    fn end(self) -> Result<(), NotFlat> {
        Ok(())
    }
}

impl ser::SerializeTupleStruct for &mut Writer<'_> {
    type Ok = ();
    type Error = NotFlat;

    #[inline]
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), NotFlat> {
        value.serialize(&mut **self)
    }

    #[inline]
    fn end(self) -> Result<(), NotFlat> {
        Ok(())
    }
}

impl ser::SerializeStruct for &mut Writer<'_> {
    type Ok = ();
    type Error = NotFlat;

    #[inline]
    fn serialize_field<T: Serialize + ?Sized>(&mut self, _: &'static str, value: &T) -> Result<(), NotFlat> {
        value.serialize(&mut **self)
    }

    // A field skipped for some values would make items of one type differ in size.
    fn skip_field(&mut self, _: &'static str) -> Result<(), NotFlat> {
        refuse("a skipped field")
    }

    #[inline]
    fn end(self) -> Result<(), NotFlat> {
        Ok(())
    }
}

struct Reader<'de> {
    input: &'de [u8],
}

impl Reader<'_> {
    #[inline]
    fn take<const N: usize>(&mut self) -> Result<[u8; N], NotFlat> {
        match self.input.split_first_chunk::<N>() {
            Some((bytes, rest)) => {
                self.input = rest;
                Ok(*bytes)
            }
            None => Err(NotFlat("the input ends early".into())),
        }
    }
}

macro_rules! read_le {
    ($($method:ident: $ty:ty => $visit:ident),* $(,)?) => {$(
        #[inline]
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NotFlat> {
            visitor.$visit(<$ty>::from_le_bytes(self.take()?))
        }
    )*};
}

macro_rules! refuse_de {
    ($($method:ident: $what:literal),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, _: V) -> Result<V::Value, NotFlat> {
            refuse($what)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for &mut Reader<'de> {
    type Error = NotFlat;

    read_le!(
        deserialize_i8: i8 => visit_i8, deserialize_i16: i16 => visit_i16, deserialize_i32: i32 => visit_i32,
        deserialize_i64: i64 => visit_i64, deserialize_i128: i128 => visit_i128,
        deserialize_u8: u8 => visit_u8, deserialize_u16: u16 => visit_u16, deserialize_u32: u32 => visit_u32,
        deserialize_u64: u64 => visit_u64, deserialize_u128: u128 => visit_u128,
        deserialize_f32: f32 => visit_f32, deserialize_f64: f64 => visit_f64,
    );

    refuse_de!(
        deserialize_any: "a self-describing value", deserialize_str: "a string", deserialize_string: "a string",
        deserialize_bytes: "a byte string", deserialize_byte_buf: "a byte string", deserialize_option: "an Option",
        deserialize_seq: "a sequence", deserialize_map: "a map", deserialize_identifier: "an identifier",
        deserialize_ignored_any: "an ignored value",
    );

    #[inline]
    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NotFlat> {
        match self.take::<1>()? {
            [0] => visitor.visit_bool(false),
            [1] => visitor.visit_bool(true),
            [other] => Err(NotFlat(format!("{other} is not a bool"))),
        }
    }

    #[inline]
    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NotFlat> {
        let code = u32::from_le_bytes(self.take()?);
        match char::from_u32(code) {
            Some(c) => visitor.visit_char(c),
            None => Err(NotFlat(format!("{code:#x} is not a char"))),
        }
    }

    #[inline]
    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NotFlat> {
        visitor.visit_unit()
    }

    #[inline]
    fn deserialize_unit_struct<V: Visitor<'de>>(self, _: &'static str, visitor: V) -> Result<V::Value, NotFlat> {
        visitor.visit_unit()
    }

    #[inline]
    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, visitor: V) -> Result<V::Value, NotFlat> {
        visitor.visit_newtype_struct(self)
    }

    #[inline]
    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, NotFlat> {
        visitor.visit_seq(Fields { reader: self, left: len })
    }

    #[inline]
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, NotFlat> {
        visitor.visit_seq(Fields { reader: self, left: len })
    }

    #[inline]
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, NotFlat> {
        visitor.visit_seq(Fields { reader: self, left: fields.len() })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, NotFlat> {
        refuse("an enum")
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

/// The fields of a tuple or struct being read, in order.
struct Fields<'a, 'de> {
    reader: &'a mut Reader<'de>,
    left: usize,
}

impl<'de> de::SeqAccess<'de> for Fields<'_, 'de> {
    type Error = NotFlat;

    #[inline]
    fn next_element_seed<T: de::DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, NotFlat> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.reader).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::{append, read};

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone, Copy)]
    struct Point {
        x: f64,
        y: f64,
        tag: (u8, char, bool),
        id: Id,
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone, Copy)]
    struct Id(i128);

    #[test]
    fn numbers_and_structs_of_them_round_trip_at_fixed_width() {
        let mut out = Vec::new();
        append(&(7u64,), &mut out).unwrap();
        assert_eq!(out, 7u64.to_le_bytes());
        let p = Point { x: 1.5, y: -2.0, tag: (9, 'é', true), id: Id(-3) };
        let mut out = Vec::new();
        append(&p, &mut out).unwrap();
        assert_eq!(out.len(), 8 + 8 + 1 + 4 + 1 + 16);
        assert_eq!(read::<Point>(&out).unwrap(), p);
        let mut out = Vec::new();
        append(&[1u16, 2, 3], &mut out).unwrap();
        assert_eq!(read::<[u16; 3]>(&out).unwrap(), [1, 2, 3]);
        assert_eq!(read::<()>(&[]).unwrap(), ());
    }

    #[test]
    fn anything_with_a_length_tag_or_choice_is_refused() {
        let mut out = Vec::new();
        assert!(append(&"text", &mut out).is_err());
        assert!(append(&vec![1u8], &mut out).is_err());
        assert!(append(&Some(1u8), &mut out).is_err());
        assert!(append(&Ok::<u8, u8>(1), &mut out).is_err());
        assert!(append(&std::collections::HashMap::<u8, u8>::new(), &mut out).is_err());
        assert!(read::<String>(&[0]).is_err());
        assert!(read::<Option<u8>>(&[0]).is_err());
    }

    #[test]
    fn short_left_over_or_invalid_input_is_an_error_not_a_value() {
        assert!(read::<u64>(&[1, 2, 3]).is_err());
        assert!(read::<u16>(&[1, 2, 3]).is_err());
        assert!(read::<bool>(&[2]).is_err());
        assert!(read::<char>(&0xD800u32.to_le_bytes()).is_err());
    }
}
