//! The codec: how values travel, where its limits are, and `SelfDescribing` for the types
//! beyond them.
//!
//! Arguments, results, queue items and messages travel encoded with [postcard]: compact and
//! fast, and never able to run code while decoding. It writes no field names and no type tags —
//! the receiving side's type says what comes next — so a few serde features cannot cross it:
//!
//! | serde feature | what goes wrong | caught |
//! |---|---|---|
//! | `#[serde(skip_serializing_if = ..)]` | the field is left out, and the decoder reads the next field in its place | when a value that leaves one out is sent over a pipe, in the arguments of a process or of `apply`/`submit`, or as a process's result; on a queue or in a `map`, a decode error that names the attribute |
//! | `#[serde(flatten)]` | a map of unknown length | when a value is sent |
//! | `serde_json::Value`, `#[serde(untagged)]`, `#[serde(tag = ..)]` enums (`deserialize_any`) | the decoder must be told what comes next | when a value is received, with an error that names the class |
//!
//! Every such error names the type, the place in the value (`.meta.labels`) and what to do:
//! wrap the value in `SelfDescribing` (feature `self-describing`), which sends it as
//! MessagePack with field names, so all of these work, at a cost measured in the benchmarks
//! (the "self-describing" queue row).
//!
//! Postcard also keeps no message of its own for an error a `Serialize` or `Deserialize` raised
//! (`Error::custom`, and serde's `invalid_value`, `unknown_variant`, … built on it): all become
//! "Serde Serialization Error". So when postcard reports one, the value is gone over again —
//! never on the fast path — with a probe that reads and writes postcard's format the same way but
//! keeps the message and notes where in the value it arose (`.field[3]`).
//!
//! [postcard]: https://docs.rs/postcard

pub(crate) mod flat;
#[cfg(feature = "self-describing")]
mod self_describing;

#[cfg(feature = "self-describing")]
pub use self_describing::SelfDescribing;

use std::fmt::{self, Display};

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use serde::ser::{self, Serialize};

/// Why encoding `value` (a `T`) failed with `error`: the type, the place in it, and serde's
/// message (`Vec<PathBuf>: path contains invalid UTF-8 characters (at [1])`).
pub(crate) fn encode_failure<T: Serialize + ?Sized>(value: &T, error: &postcard::Error) -> String {
    let why = match error {
        postcard::Error::SerdeSerCustom | postcard::Error::SerializeSeqLengthUnknown => {
            match crate::handle::dry_run(|| value.serialize(Probe)) {
                Err(why) => why.to_string(),
                Ok(()) => error.to_string(),
            }
        }
        _ => error.to_string(),
    };
    format!("{}: {why}", crate::error::type_name::<T>())
}

/// The serde features a format without field names or type tags cannot carry, for messages.
const NOT_SELF_DESCRIBING: &str = "postcard, the wire's codec, writes no field names or type tags; \
     wrap the value in `multiproc::codec::SelfDescribing` (feature `self-describing`) to send it \
     with a self-describing codec (see the docs of `multiproc::codec`)";

/// Whether `value` can take postcard's wire: no field left out (`#[serde(skip_serializing_if)]`),
/// which would make the decoder read the next field in its place, and no map or sequence of
/// unknown length (`#[serde(flatten)]`). Checked on every value sent over a connection, in a
/// task's arguments or as a process's result — a pass that writes nothing, tens of nanoseconds
/// for a small value — so that the error comes before the other side does any work; not on a
/// queue's or a bulk map's path, where a field left out shows as a decode error that names the
/// attribute. Every value, not the first of each type: a field is left out only for some values.
pub(crate) fn fits_the_wire<T: Serialize + ?Sized>(value: &T) -> bool {
    // Errors of the value itself come (with their message) from the encode that follows.
    !matches!(crate::handle::dry_run(|| value.serialize(Probe)), Err(why) if why.structural)
}

/// Why decoding `bytes` as a `T` failed with `error`: the type, the place in it, and serde's
/// message.
pub(crate) fn decode_failure<T: de::DeserializeOwned>(bytes: &[u8], error: &postcard::Error) -> String {
    let why = match error {
        postcard::Error::SerdeDeCustom | postcard::Error::WontImplement => {
            match crate::handle::receiving(|| T::deserialize(&mut Reader { input: bytes })) {
                Err(why) => why.to_string(),
                Ok(_) => error.to_string(),
            }
        }
        // What a field left out by the encoder looks like from here.
        postcard::Error::DeserializeUnexpectedEnd
        | postcard::Error::DeserializeBadVarint
        | postcard::Error::DeserializeBadBool
        | postcard::Error::DeserializeBadChar
        | postcard::Error::DeserializeBadUtf8
        | postcard::Error::DeserializeBadOption
        | postcard::Error::DeserializeBadEnum
        | postcard::Error::DeserializeBadEncoding => format!(
            "{error}; if the type has `#[serde(skip_serializing_if)]` fields, the sender left one \
             out and this is the next field read in its place: {NOT_SELF_DESCRIBING}"
        ),
        _ => error.to_string(),
    };
    format!("{}: {why}", crate::error::type_name::<T>())
}

/// A failure with its message, and where in the value it arose (innermost first).
#[derive(Debug)]
struct Why {
    message: String,
    path: Vec<String>,
    /// The type's shape cannot take the wire (not one value's content).
    structural: bool,
}

impl Why {
    fn structural(message: String) -> Why {
        Why { message, path: Vec::new(), structural: true }
    }

    fn within(mut self, place: impl Display) -> Why {
        self.path.push(place.to_string());
        self
    }
}

impl Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if !self.path.is_empty() {
            f.write_str(" (at ")?;
            for place in self.path.iter().rev() {
                f.write_str(place)?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

impl std::error::Error for Why {}

impl ser::Error for Why {
    fn custom<M: Display>(message: M) -> Why {
        Why { message: message.to_string(), path: Vec::new(), structural: false }
    }
}

impl de::Error for Why {
    fn custom<M: Display>(message: M) -> Why {
        Why { message: message.to_string(), path: Vec::new(), structural: false }
    }
}

fn unknown_length(what: &str) -> Why {
    Why::structural(format!(
        "a {what} of unknown length, which `#[serde(flatten)]` makes (as does a `Serialize` that \
         streams an iterator): {NOT_SELF_DESCRIBING}"
    ))
}

// ----- encoding: a serializer that writes nothing and keeps messages -----

struct Probe;

/// The parts of a sequence, tuple, map or struct, numbered as they come.
struct Parts {
    index: usize,
}

impl Parts {
    fn part<T: Serialize + ?Sized>(&mut self, value: &T, place: impl Display) -> Result<(), Why> {
        self.index += 1;
        value.serialize(Probe).map_err(|why| why.within(place))
    }
}

/// Serializer methods for values that hold nothing that could fail.
macro_rules! ignored {
    ($($method:ident: $type:ty),* $(,)?) => {$(
        fn $method(self, _: $type) -> Result<(), Why> {
            Ok(())
        }
    )*};
}

impl ser::Serializer for Probe {
    type Ok = ();
    type Error = Why;
    type SerializeSeq = Parts;
    type SerializeTuple = Parts;
    type SerializeTupleStruct = Parts;
    type SerializeTupleVariant = Parts;
    type SerializeMap = Parts;
    type SerializeStruct = Parts;
    type SerializeStructVariant = Parts;

    ignored!(
        serialize_bool: bool,
        serialize_i8: i8,
        serialize_i16: i16,
        serialize_i32: i32,
        serialize_i64: i64,
        serialize_i128: i128,
        serialize_u8: u8,
        serialize_u16: u16,
        serialize_u32: u32,
        serialize_u64: u64,
        serialize_u128: u128,
        serialize_f32: f32,
        serialize_f64: f64,
        serialize_char: char,
        serialize_str: &str,
        serialize_bytes: &[u8],
    );

    fn serialize_none(self) -> Result<(), Why> {
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Why> {
        value.serialize(Probe)
    }
    fn serialize_unit(self) -> Result<(), Why> {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Why> {
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result<(), Why> {
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Result<(), Why> {
        value.serialize(Probe)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Why> {
        value.serialize(Probe).map_err(|why| why.within(format_args!("::{variant}")))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Parts, Why> {
        if len.is_none() {
            return Err(unknown_length("sequence"));
        }
        Ok(Parts { index: 0 })
    }
    fn serialize_tuple(self, _: usize) -> Result<Parts, Why> {
        Ok(Parts { index: 0 })
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Parts, Why> {
        Ok(Parts { index: 0 })
    }
    fn serialize_tuple_variant(self, _: &'static str, _: u32, _: &'static str, _: usize) -> Result<Parts, Why> {
        Ok(Parts { index: 0 })
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Parts, Why> {
        if len.is_none() {
            return Err(unknown_length("map"));
        }
        Ok(Parts { index: 0 })
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Parts, Why> {
        Ok(Parts { index: 0 })
    }
    fn serialize_struct_variant(self, _: &'static str, _: u32, _: &'static str, _: usize) -> Result<Parts, Why> {
        Ok(Parts { index: 0 })
    }
    fn is_human_readable(&self) -> bool {
        false
    }
}

/// The parts of sequences and tuples, numbered: `[i]` in a sequence, `.i` in a tuple.
macro_rules! numbered_parts {
    ($($part:ident :: $method:ident => $place:literal),* $(,)?) => {$(
        impl ser::$part for Parts {
            type Ok = ();
            type Error = Why;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Why> {
                let i = self.index;
                self.part(value, format_args!($place, i))
            }
            fn end(self) -> Result<(), Why> {
                Ok(())
            }
        }
    )*};
}

numbered_parts!(
    SerializeSeq::serialize_element => "[{}]",
    SerializeTuple::serialize_element => ".{}",
    SerializeTupleStruct::serialize_field => ".{}",
    SerializeTupleVariant::serialize_field => ".{}",
);

/// The fields of structs and struct variants, by name.
macro_rules! named_parts {
    ($($part:ident),*) => {$(
        impl ser::$part for Parts {
            type Ok = ();
            type Error = Why;
            fn serialize_field<T: Serialize + ?Sized>(&mut self, name: &'static str, value: &T) -> Result<(), Why> {
                self.part(value, format_args!(".{name}"))
            }
            fn skip_field(&mut self, name: &'static str) -> Result<(), Why> {
                Err(Why::structural(format!(
                    "field `{name}` was left out by `#[serde(skip_serializing_if)]`, so the \
                     decoder would read the next field in its place: {NOT_SELF_DESCRIBING}"
                )))
            }
            fn end(self) -> Result<(), Why> {
                Ok(())
            }
        }
    )*};
}

named_parts!(SerializeStruct, SerializeStructVariant);

impl ser::SerializeMap for Parts {
    type Ok = ();
    type Error = Why;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Why> {
        let i = self.index;
        key.serialize(Probe).map_err(|why| why.within(format_args!("[key of entry {i}]")))
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Why> {
        let i = self.index;
        self.part(value, format_args!("[entry {i}]"))
    }
    fn end(self) -> Result<(), Why> {
        Ok(())
    }
}

// ----- decoding: postcard's format read again, keeping messages -----

/// Reads postcard's format: integers as LEB128 varints (signed ones zigzagged; `u8`/`i8` as one
/// byte), floats little-endian, strings and byte strings and sequences and maps after their
/// length, options after a 0/1 tag, enums after their variant index, structs and tuples as their
/// fields in order.
struct Reader<'de> {
    input: &'de [u8],
}

fn ended() -> Why {
    de::Error::custom("the encoding ends early")
}

impl<'de> Reader<'de> {
    fn byte(&mut self) -> Result<u8, Why> {
        let (&b, rest) = self.input.split_first().ok_or_else(ended)?;
        self.input = rest;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'de [u8], Why> {
        if n > self.input.len() {
            return Err(ended());
        }
        let (head, rest) = self.input.split_at(n);
        self.input = rest;
        Ok(head)
    }

    fn varint(&mut self) -> Result<u128, Why> {
        let mut value = 0u128;
        for shift in (0..128).step_by(7) {
            let b = self.byte()?;
            value |= u128::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(de::Error::custom("a varint runs too long"))
    }

    fn unsigned<T: TryFrom<u128>>(&mut self) -> Result<T, Why> {
        T::try_from(self.varint()?).map_err(|_| de::Error::custom("a varint is out of range"))
    }

    fn signed<T: TryFrom<i128>>(&mut self) -> Result<T, Why> {
        let zigzag = self.varint()?;
        let value = ((zigzag >> 1) as i128) ^ -((zigzag & 1) as i128);
        T::try_from(value).map_err(|_| de::Error::custom("a varint is out of range"))
    }

    fn len(&mut self) -> Result<usize, Why> {
        self.unsigned()
    }

    fn str(&mut self) -> Result<&'de str, Why> {
        let n = self.len()?;
        std::str::from_utf8(self.take(n)?).map_err(|e| de::Error::custom(format_args!("a string is not UTF-8: {e}")))
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], Why> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }
}

/// The parts of a sequence, tuple, struct or map being read, with the names of a struct's fields.
struct Items<'a, 'de> {
    reader: &'a mut Reader<'de>,
    left: usize,
    index: usize,
    fields: &'static [&'static str],
    /// A tuple's parts are named `.0`, `.1`, …; a sequence's `[0]`, `[1]`, ….
    tuple: bool,
}

impl<'a, 'de> Items<'a, 'de> {
    fn new(reader: &'a mut Reader<'de>, left: usize, fields: &'static [&'static str]) -> Items<'a, 'de> {
        Items { reader, left, index: 0, fields, tuple: false }
    }

    fn tuple(reader: &'a mut Reader<'de>, len: usize) -> Items<'a, 'de> {
        Items { tuple: true, ..Items::new(reader, len, &[]) }
    }
}

impl<'de> de::SeqAccess<'de> for Items<'_, 'de> {
    type Error = Why;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Why> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        let i = self.index;
        self.index += 1;
        seed.deserialize(&mut *self.reader).map(Some).map_err(|why| match self.fields.get(i) {
            Some(name) => why.within(format_args!(".{name}")),
            None if self.tuple => why.within(format_args!(".{i}")),
            None => why.within(format_args!("[{i}]")),
        })
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

impl<'de> de::MapAccess<'de> for Items<'_, 'de> {
    type Error = Why;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Why> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        let i = self.index;
        seed.deserialize(&mut *self.reader).map(Some).map_err(|why| why.within(format_args!("[key of entry {i}]")))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Why> {
        let i = self.index;
        self.index += 1;
        seed.deserialize(&mut *self.reader).map_err(|why| why.within(format_args!("[entry {i}]")))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

/// An enum being read: its variants' names, for the place in a message.
struct Variant<'a, 'de> {
    reader: &'a mut Reader<'de>,
    names: &'static [&'static str],
    name: &'static str,
}

impl<'a, 'de> de::EnumAccess<'de> for Variant<'a, 'de> {
    type Error = Why;
    type Variant = Variant<'a, 'de>;

    fn variant_seed<V: DeserializeSeed<'de>>(mut self, seed: V) -> Result<(V::Value, Self::Variant), Why> {
        let index: u32 = self.reader.unsigned()?;
        self.name = self.names.get(index as usize).copied().unwrap_or("?");
        let value = seed.deserialize(IntoDeserializer::<Why>::into_deserializer(index))?;
        Ok((value, self))
    }
}

impl<'de> de::VariantAccess<'de> for Variant<'_, 'de> {
    type Error = Why;

    fn unit_variant(self) -> Result<(), Why> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Why> {
        let name = self.name;
        seed.deserialize(self.reader).map_err(|why| why.within(format_args!("::{name}")))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Why> {
        let name = self.name;
        visitor.visit_seq(Items::tuple(self.reader, len)).map_err(|why| why.within(format_args!("::{name}")))
    }

    fn struct_variant<V: Visitor<'de>>(self, fields: &'static [&'static str], visitor: V) -> Result<V::Value, Why> {
        let name = self.name;
        visitor
            .visit_seq(Items::new(self.reader, fields.len(), fields))
            .map_err(|why| why.within(format_args!("::{name}")))
    }
}

impl<'de> de::Deserializer<'de> for &mut Reader<'de> {
    type Error = Why;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Why> {
        Err(Why::structural(format!(
            "it asks the decoder what comes next (`deserialize_any`), as `serde_json::Value`, \
             `#[serde(untagged)]` and internally tagged (`#[serde(tag = ..)]`) enums and \
             `#[serde(flatten)]` do: {NOT_SELF_DESCRIBING}"
        )))
    }
    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Why> {
        match self.byte()? {
            0 => visitor.visit_bool(false),
            1 => visitor.visit_bool(true),
            b => Err(de::Error::invalid_value(de::Unexpected::Unsigned(b.into()), &"a bool (0 or 1)")),
        }
    }
    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Why> {
        visitor.visit_i8(self.byte()? as i8)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Why> {
        visitor.visit_i16(self.signed()?)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Why> {
        visitor.visit_i32(self.signed()?)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Why> {
        visitor.visit_i64(self.signed()?)
    }
    fn deserialize_i128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Why> {
        visitor.visit_i128(self.signed()?)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Why> {
        visitor.visit_u8(self.byte()?)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Why> {
        visitor.visit_u16(self.unsigned()?)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Why> {
        visitor.visit_u32(self.unsigned()?)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Why> {
        visitor.visit_u64(self.unsigned()?)
    }
    fn deserialize_u128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Why> {
        visitor.visit_u128(self.varint()?)
    }
    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Why> {
        visitor.visit_f32(f32::from_le_bytes(self.fixed()?))
    }
    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Why> {
        visitor.visit_f64(f64::from_le_bytes(self.fixed()?))
    }
    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Why> {
        let s = self.str()?;
        let mut chars = s.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => visitor.visit_char(c),
            _ => Err(de::Error::invalid_value(de::Unexpected::Str(s), &"one character")),
        }
    }
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Why> {
        visitor.visit_borrowed_str(self.str()?)
    }
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Why> {
        visitor.visit_borrowed_str(self.str()?)
    }
    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Why> {
        let n = self.len()?;
        visitor.visit_borrowed_bytes(self.take(n)?)
    }
    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Why> {
        self.deserialize_bytes(visitor)
    }
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Why> {
        match self.byte()? {
            0 => visitor.visit_none(),
            1 => visitor.visit_some(self),
            b => Err(de::Error::invalid_value(de::Unexpected::Unsigned(b.into()), &"an option tag (0 or 1)")),
        }
    }
    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Why> {
        visitor.visit_unit()
    }
    fn deserialize_unit_struct<V: Visitor<'de>>(self, _: &'static str, visitor: V) -> Result<V::Value, Why> {
        visitor.visit_unit()
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, visitor: V) -> Result<V::Value, Why> {
        visitor.visit_newtype_struct(self)
    }
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Why> {
        let n = self.len()?;
        visitor.visit_seq(Items::new(self, n, &[]))
    }
    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Why> {
        visitor.visit_seq(Items::tuple(self, len))
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Why> {
        visitor.visit_seq(Items::tuple(self, len))
    }
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Why> {
        let n = self.len()?;
        visitor.visit_map(Items::new(self, n, &[]))
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Why> {
        visitor.visit_seq(Items::new(self, fields.len(), fields))
    }
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Why> {
        visitor.visit_enum(Variant { reader: self, names: variants, name: "?" })
    }
    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Why> {
        visitor.visit_u32(self.unsigned()?)
    }
    fn deserialize_ignored_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Why> {
        Err(de::Error::custom("the encoding is not self-describing"))
    }
    fn is_human_readable(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(serde::Serialize, serde::Deserialize, Debug)]
    struct Outer {
        name: String,
        items: Vec<Inner>,
    }

    #[derive(serde::Serialize, serde::Deserialize, Debug)]
    enum Inner {
        Plain(u32),
        Counted { count: std::num::NonZeroU32 },
    }

    #[test]
    fn the_probe_reads_what_postcard_writes() {
        let value = Outer {
            name: "x".into(),
            items: vec![Inner::Plain(300), Inner::Counted { count: std::num::NonZeroU32::new(7).unwrap() }],
        };
        let bytes = postcard::to_stdvec(&value).unwrap();
        let back = Outer::deserialize(&mut Reader { input: &bytes }).unwrap();
        assert_eq!(format!("{back:?}"), format!("{value:?}"));
        assert!(value.serialize(Probe).is_ok());
    }

    #[test]
    fn a_decode_error_names_the_type_the_place_and_the_message() {
        // A good value's encoding with its last byte, the count, set to 0.
        let good = Outer { name: "x".into(), items: vec![Inner::Counted { count: 5.try_into().unwrap() }] };
        let mut bytes = postcard::to_stdvec(&good).unwrap();
        *bytes.last_mut().unwrap() = 0;
        let error = postcard::from_bytes::<Outer>(&bytes).unwrap_err();
        let message = decode_failure::<Outer>(&bytes, &error);
        assert!(message.contains("Outer"), "{message}");
        assert!(message.contains("nonzero"), "{message}");
        assert!(message.contains(".items[0]::Counted.count"), "{message}");
    }

    #[test]
    fn an_encode_error_names_the_type_the_place_and_the_message() {
        use std::os::unix::ffi::OsStrExt;
        let path = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(b"/tmp/\xff"));
        let value = vec![std::path::PathBuf::from("/ok"), path];
        let error = postcard::to_stdvec(&value).unwrap_err();
        let message = encode_failure(&value, &error);
        assert!(message.contains("PathBuf"), "{message}");
        assert!(message.contains("UTF-8"), "{message}");
        assert!(message.contains("[1]"), "{message}");
    }
}
