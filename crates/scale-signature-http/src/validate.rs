//! Validation without decoding: the same checks as the [`Message`] impls
//! (wire types, lengths, UTF-8, the status range, the size of header maps),
//! walking the bytes instead of filling a context.
//!
//! [`Context::validate`] must accept exactly what [`Context::decode`]
//! accepts; a property test holds the two together.
//!
//! [`Message`]: prost::Message

use prost::encoding::{DecodeContext, WireType, check_wire_type, decode_key, decode_varint, skip_field};

use crate::error::{DecodeError, buffer_underflow, not_utf8, status_out_of_range, too_many_headers};
use crate::message::{FieldKind, Shape};
use crate::types::{Context, MAX_HEADER_ITEMS, Request, Response};

impl Context {
    /// Checks that `bytes` decode as a context without building one (so
    /// without allocating): `Ok` exactly when [`Context::decode`] succeeds.
    ///
    /// # Errors
    ///
    /// As [`Context::decode`].
    pub fn validate(bytes: &[u8]) -> Result<(), DecodeError> {
        check_or_decode(bytes, bytes, Shape::Context)
    }
}

/// Checks that `message`, of shape `shape` and part of the encoded context
/// `context`, decodes; where only the decoder can tell, decodes `context`.
#[inline]
pub(crate) fn check_or_decode(context: &[u8], message: &[u8], shape: Shape) -> Result<(), DecodeError> {
    match check_message(message, shape) {
        Ok(()) => Ok(()),
        Err(Unchecked::Invalid(err)) => Err(err.into()),
        // Rare: let the decoder itself decide.
        Err(Unchecked::Group) => Context::decode(context).map(drop),
    }
}

/// Why [`check_message`] stopped.
enum Unchecked {
    /// The bytes do not decode.
    Invalid(prost::DecodeError),
    /// An unknown group field: whether it decodes depends on prost's
    /// recursion limit at its depth, which only the decoder tracks.
    Group,
}

impl From<prost::DecodeError> for Unchecked {
    fn from(err: prost::DecodeError) -> Self {
        Unchecked::Invalid(err)
    }
}

/// Takes a length-delimited field's contents off the front of `buf`.
#[inline]
pub(crate) fn take_delimited<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], prost::DecodeError> {
    // Most lengths fit one byte: read those here, the rest through prost.
    let len = match buf.split_first() {
        Some((&len, rest)) if len < 0x80 => {
            *buf = rest;
            u64::from(len)
        }
        _ => decode_varint(buf)?,
    };
    let len = usize::try_from(len).ok().filter(|&len| len <= buf.len()).ok_or_else(buffer_underflow)?;
    let (field, rest) = buf.split_at(len);
    *buf = rest;
    Ok(field)
}

fn check_message(buf: &[u8], shape: Shape) -> Result<(), Unchecked> {
    check_fields(buf, shape, &mut 0)
}

/// What field `tag` of a message of shape `shape` holds. The request's and
/// the response's come from their field tables (`crate::message`).
fn field_of(shape: Shape, tag: u32) -> FieldKind {
    match (shape, tag) {
        (Shape::Context, 1) => FieldKind::Message(Shape::Request),
        (Shape::Context, 2) => FieldKind::Message(Shape::Response),
        (Shape::Request, _) => Request::field_kind(tag),
        (Shape::Response, _) => Response::field_kind(tag),
        (Shape::HeaderEntry, 1) | (Shape::HeaderValues, 1) => FieldKind::String,
        (Shape::HeaderEntry, 2) => FieldKind::Message(Shape::HeaderValues),
        _ => FieldKind::Unknown,
    }
}

/// [`check_message`], counting the header names and values of the map the
/// message belongs to in `items` (each request and response starts a count
/// of its own, as each decode of one does).
fn check_fields(mut buf: &[u8], shape: Shape, items: &mut usize) -> Result<(), Unchecked> {
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf)?;
        match field_of(shape, tag) {
            FieldKind::Message(inner) => {
                check_wire_type(WireType::LengthDelimited, wire_type)?;
                let message = take_delimited(&mut buf)?;
                match inner {
                    Shape::Request | Shape::Response => check_fields(message, inner, &mut 0)?,
                    Shape::HeaderEntry => {
                        count_item(items)?;
                        check_fields(message, inner, items)?;
                    }
                    Shape::Context | Shape::HeaderValues => check_fields(message, inner, items)?,
                }
            }
            FieldKind::String => {
                check_wire_type(WireType::LengthDelimited, wire_type)?;
                core::str::from_utf8(take_delimited(&mut buf)?).map_err(|_| not_utf8())?;
                if matches!(shape, Shape::HeaderValues) {
                    count_item(items)?;
                }
            }
            FieldKind::Bytes => {
                check_wire_type(WireType::LengthDelimited, wire_type)?;
                take_delimited(&mut buf)?;
            }
            FieldKind::Varint => {
                check_wire_type(WireType::Varint, wire_type)?;
                decode_varint(&mut buf)?;
            }
            FieldKind::Status => {
                check_wire_type(WireType::Varint, wire_type)?;
                // As `uint32::merge` then the range check of the status field.
                let status = decode_varint(&mut buf)? as u32;
                u16::try_from(status).map_err(|_| status_out_of_range())?;
            }
            FieldKind::Unknown if wire_type == WireType::StartGroup => return Err(Unchecked::Group),
            FieldKind::Unknown => skip_field(wire_type, tag, &mut buf, DecodeContext::default())?,
        }
    }
    Ok(())
}

/// Counts one header name or value; an error past [`MAX_HEADER_ITEMS`].
fn count_item(items: &mut usize) -> Result<(), Unchecked> {
    *items += 1;
    if *items > MAX_HEADER_ITEMS {
        return Err(Unchecked::Invalid(too_many_headers()));
    }
    Ok(())
}
