//! Property tests: encoding then decoding gives back the value; decoding any
//! bytes gives a value or an error, never a panic.

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use scale_signature_http::raw::{self, EncodedContext};
use scale_signature_http::{Bytes, Context, Headers, Request, Response, RunResult};

fn headers() -> impl Strategy<Value = Headers> {
    btree_map(".{0,12}", vec(".{0,16}", 0..4), 0..5).prop_map(|map| map.into_iter().collect())
}

/// Mostly small bodies, sometimes ones that the codec copies in pieces.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![4 => vec(any::<u8>(), 0..512), 1 => vec(any::<u8>(), 2000..6200)]
}

fn request() -> impl Strategy<Value = Request> {
    ((".{0,8}", ".{0,40}", any::<u64>(), ".{0,10}", ".{0,15}"), body(), headers()).prop_map(
        |((method, uri, content_length, protocol, ip), body, headers)| Request {
            method,
            uri,
            content_length,
            protocol,
            ip,
            body: Bytes::from(body),
            headers,
        },
    )
}

fn response() -> impl Strategy<Value = Response> {
    (any::<u16>(), body(), headers()).prop_map(|(status_code, body, headers)| Response {
        status_code,
        body: Bytes::from(body),
        headers,
    })
}

fn context() -> impl Strategy<Value = Context> {
    (request(), response()).prop_map(|(request, response)| Context { request, response })
}

proptest! {
    #[test]
    fn context_round_trips(ctx in context()) {
        let bytes = ctx.encode_to_vec();
        prop_assert_eq!(Context::decode(&bytes[..]).unwrap(), ctx);
    }

    #[test]
    fn result_round_trips(ctx in context(), error in ".{0,64}", ok in any::<bool>()) {
        let result = if ok { RunResult::Context(ctx) } else { RunResult::Error(error) };
        let bytes = result.encode_to_vec();
        prop_assert_eq!(RunResult::decode(&bytes[..]).unwrap(), result);
    }

    #[test]
    fn decode_in_place_agrees_with_decode(used in context(), ctx in context(), noise in vec(any::<u8>(), 0..64)) {
        for bytes in [ctx.encode_to_vec(), noise] {
            let mut into = used.clone();
            let got = into.decode_in_place(&bytes[..]);
            match Context::decode(&bytes[..]) {
                Ok(expected) => {
                    prop_assert_eq!(got, Ok(()));
                    prop_assert_eq!(into, expected);
                }
                Err(expected) => prop_assert_eq!(got, Err(expected)),
            }
        }
    }

    /// One context decoded into again and again (as hosts and guests do,
    /// reusing the header allocations of each decode for the next) gives
    /// what a fresh decode gives every time, bad input included.
    #[test]
    fn decoding_into_one_context_over_and_over_agrees_with_decode(
        contexts in vec(context(), 1..4),
        noise in vec(vec(any::<u8>(), 0..64), 0..3),
    ) {
        let mut into = Context::default();
        let inputs = contexts.iter().map(Context::encode_to_vec).chain(noise).chain([contexts[0].encode_to_vec()]);
        for bytes in inputs {
            let got = into.decode_in_place(&bytes[..]);
            match Context::decode(&bytes[..]) {
                Ok(expected) => {
                    prop_assert_eq!(got, Ok(()));
                    prop_assert_eq!(&into, &expected);
                }
                Err(expected) => prop_assert_eq!(got, Err(expected)),
            }
            let result = RunResult::Context(into.clone()).encode_to_vec();
            let mut again = Context::default();
            prop_assert_eq!(RunResult::decode_into(&result[..], &mut into), Ok(None));
            prop_assert_eq!(RunResult::decode_into(&result[..], &mut again), Ok(None));
            prop_assert_eq!(&into, &again);
        }
    }

    #[test]
    fn reset_gives_the_default_context(ctx in context()) {
        let mut reset = ctx;
        reset.reset();
        prop_assert_eq!(reset, Context::default());
    }

    /// Decoding into a used context gives what decoding afresh gives, for
    /// valid results and for arbitrary bytes alike.
    #[test]
    fn decode_into_agrees_with_decode(
        used in context(),
        ctx in context(),
        error in ".{0,64}",
        ok in any::<bool>(),
        noise in vec(any::<u8>(), 0..64),
    ) {
        let result = if ok { RunResult::Context(ctx) } else { RunResult::Error(error) };
        for bytes in [result.encode_to_vec(), noise] {
            let mut into = used.clone();
            let got = RunResult::decode_into(&bytes[..], &mut into);
            match RunResult::decode(&bytes[..]) {
                Ok(RunResult::Context(expected)) => {
                    prop_assert_eq!(got, Ok(None));
                    prop_assert_eq!(into, expected);
                }
                Ok(RunResult::Error(expected)) => prop_assert_eq!(got, Ok(Some(expected))),
                Err(expected) => prop_assert_eq!(got, Err(expected)),
            }
        }
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in vec(any::<u8>(), 0..256)) {
        let _ = Context::decode(&bytes[..]);
        let _ = RunResult::decode(&bytes[..]);
    }

    #[test]
    fn decoding_mutated_encodings_never_panics(ctx in context(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = ctx.encode_to_vec();
        let at = at.index(bytes.len());
        bytes[at] = byte;
        let _ = Context::decode(&bytes[..]);
        let _ = RunResult::decode(&bytes[..]);
    }
}

/// What the validation tests try: a valid encoding, the same with the byte
/// at `at` replaced by `byte`, and noise.
fn with_a_byte_changed_and_noise(valid: Vec<u8>, at: prop::sample::Index, byte: u8, noise: Vec<u8>) -> [Vec<u8>; 3] {
    let mut changed = valid.clone();
    if !changed.is_empty() {
        let at = at.index(changed.len());
        changed[at] = byte;
    }
    [valid, changed, noise]
}

proptest! {
    /// `Context::validate` accepts exactly what `Context::decode` accepts:
    /// valid encodings, encodings with one byte changed, and noise.
    #[test]
    fn validate_agrees_with_decode(
        ctx in context(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        noise in vec(any::<u8>(), 0..128),
    ) {
        for bytes in with_a_byte_changed_and_noise(ctx.encode_to_vec(), at, byte, noise) {
            prop_assert_eq!(Context::validate(&bytes).is_ok(), Context::decode(&bytes[..]).is_ok());
        }
    }

    /// `EncodedContext::validate_against` accepts exactly what `Context::validate`
    /// accepts, whether the bytes share their request with the sent context
    /// (the shortcut) or not.
    #[test]
    fn validate_against_agrees_with_validate(
        ctx in context(),
        sent_response in response(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        noise in vec(any::<u8>(), 0..128),
    ) {
        let sent = Context { request: ctx.request.clone(), response: sent_response }.encode_to_vec();
        for bytes in with_a_byte_changed_and_noise(ctx.encode_to_vec(), at, byte, noise) {
            prop_assert_eq!(EncodedContext::new(&bytes).validate_against(EncodedContext::new(&sent)).is_ok(), Context::validate(&bytes).is_ok());
        }
    }

    /// A context split into its encoded request and response, each decoded
    /// into a used value, and put together again from the encoded request
    /// and the decoded response, gives back the same bytes and values.
    #[test]
    fn split_contexts_decode_and_join_again(ctx in context(), used in context()) {
        let bytes = ctx.encode_to_vec();
        let (request_bytes, response_bytes) = EncodedContext::new(&bytes).parts().unwrap();
        let (mut request, mut response) = (used.request, used.response);
        raw::decode_request_in_place(&mut request, request_bytes).unwrap();
        raw::decode_response_in_place(&mut response, response_bytes).unwrap();
        prop_assert_eq!(&request, &ctx.request);
        prop_assert_eq!(&response, &ctx.response);
        // Decoded from bytes it may keep, the request's body is a view of them.
        let shared = Bytes::copy_from_slice(request_bytes);
        let mut viewing = Request::default();
        raw::decode_request_in_place_shared(&mut viewing, shared.clone()).unwrap();
        prop_assert_eq!(&viewing, &ctx.request);
        let within = shared.as_ptr_range();
        prop_assert!(viewing.body.is_empty() || within.contains(&viewing.body.as_ptr()));
        let mut joined = Vec::new();
        EncodedContext::encode_parts_into(request_bytes, &response, &mut joined);
        prop_assert_eq!(&joined, &bytes);
        let mut result = Vec::new();
        EncodedContext::encode_parts_as_result_into(request_bytes, &response, &mut result);
        prop_assert_eq!(result, RunResult::Context(ctx).encode_to_vec());
    }

    /// A successful result's context is found as the bytes of its encoding;
    /// an error result, or a result with more after its context, has none.
    #[test]
    fn of_result_finds_the_context_of_a_result(ctx in context(), error in ".{0,16}") {
        let encoded = ctx.encode_to_vec();
        let mut result = RunResult::Context(ctx).encode_to_vec();
        prop_assert_eq!(EncodedContext::of_result(&result).map(EncodedContext::as_bytes), Some(&encoded[..]));
        let failed = RunResult::Error(error).encode_to_vec();
        prop_assert_eq!(EncodedContext::of_result(&failed).map(EncodedContext::as_bytes), None);
        result.push(0);
        prop_assert_eq!(EncodedContext::of_result(&result).map(EncodedContext::as_bytes), None);
    }

    /// An unchanged context wrapped as a result decodes to what the context decodes to.
    #[test]
    fn encoded_context_results_decode_as_the_context(ctx in context()) {
        let mut buf = Vec::new();
        EncodedContext::new(&ctx.encode_to_vec()).encode_result_into(&mut buf).unwrap();
        prop_assert_eq!(&buf, &RunResult::Context(ctx.clone()).encode_to_vec());
        prop_assert_eq!(RunResult::decode(&buf[..]).unwrap(), RunResult::Context(ctx));
    }
}

#[test]
fn invalid_encoded_contexts_are_refused_and_leave_the_buffer() {
    let mut buf = vec![1, 2, 3];
    // Field 1 (the request) claims 5 bytes and has 1.
    assert!(EncodedContext::new(&[0x0a, 0x05, 0x00]).encode_result_into(&mut buf).is_err());
    // A status code that does not fit in 16 bits.
    let status = [0x12, 0x04, 0x08, 0x80, 0x80, 0x04];
    assert!(Context::validate(&status).is_err());
    assert!(Context::decode(&status[..]).is_err());
    assert_eq!(buf, [1, 2, 3]);
}

proptest! {
    /// A result holds a context's encoding exactly when it is that context's
    /// successful result.
    #[test]
    fn is_context_of_recognises_only_the_same_context(a in context(), b in context(), error in ".{0,16}") {
        let encoded = a.encode_to_vec();
        prop_assert!(EncodedContext::new(&encoded).is_context_of(&RunResult::Context(a.clone()).encode_to_vec()));
        prop_assert!(!EncodedContext::new(&encoded).is_context_of(&RunResult::Error(error).encode_to_vec()));
        let other = RunResult::Context(b.clone()).encode_to_vec();
        prop_assert_eq!(EncodedContext::new(&encoded).is_context_of(&other), a.encode_to_vec() == b.encode_to_vec());
    }
}

proptest! {
    /// One changed byte anywhere in the context part of a result is noticed
    /// (the comparison goes eight bytes at a step, then the tail).
    #[test]
    fn is_context_of_notices_any_changed_byte(ctx in context(), at in any::<prop::sample::Index>(), flip in 1u8..) {
        let encoded = ctx.encode_to_vec();
        let mut result = RunResult::Context(ctx).encode_to_vec();
        let header = result.len() - encoded.len();
        if !encoded.is_empty() {
            let at = header + at.index(encoded.len());
            result[at] ^= flip;
            prop_assert!(!EncodedContext::new(&encoded).is_context_of(&result));
        }
    }
}

proptest! {
    /// Decoding a result while reusing the sent request gives exactly what a
    /// plain decode gives, whether the function kept the request (`b` has
    /// `a`'s) or changed it, and leaves the sent request alone unless it was
    /// taken.
    #[test]
    fn decoding_with_the_sent_request_equals_decoding(a in context(), b in context(), keep in any::<bool>(), error in ".{0,16}") {
        let sent = a.encode_to_vec();
        let mut answer = b.clone();
        if keep {
            answer.request = a.request.clone();
        }
        let mut into = Context::default();
        let mut request = a.request.clone();
        let outcome = EncodedContext::new(&sent).decode_result_reusing(&RunResult::Context(answer.clone()).encode_to_vec(), &mut into, &mut request);
        prop_assert_eq!(outcome, Ok(None));
        prop_assert_eq!(&into, &answer);
        if answer.request != a.request {
            prop_assert_eq!(&request, &a.request);
        }

        let mut request = a.request.clone();
        let outcome = EncodedContext::new(&sent).decode_result_reusing(&RunResult::Error(error.clone()).encode_to_vec(), &mut into, &mut request);
        prop_assert_eq!(outcome, Ok(Some(error)));
        prop_assert_eq!(&request, &a.request);
    }

    /// A result whose response part does not decode is an error, and the
    /// sent request stays where it was.
    #[test]
    fn a_bad_response_next_to_the_sent_request_is_an_error(a in context()) {
        let sent = a.encode_to_vec();
        // The sent request field as it was (a default response encodes as
        // the two bytes 0x12 0x00), then a response whose status is out of
        // range: status_code (field 1) = 70000.
        let with_default_response = Context { request: a.request.clone(), response: Response::default() }.encode_to_vec();
        let mut context = with_default_response[..with_default_response.len() - 2].to_vec();
        context.extend_from_slice(&[0x12, 0x04, 0x08, 0xf0, 0xa2, 0x04]);
        let mut result = vec![0x0a];
        prost::encoding::encode_varint(context.len() as u64, &mut result);
        result.extend_from_slice(&context);
        let mut request = a.request.clone();
        let outcome = EncodedContext::new(&sent).decode_result_reusing(&result, &mut Context::default(), &mut request);
        prop_assert!(outcome.is_err());
        prop_assert_eq!(&request, &a.request);
    }
}

/// `value` as a varint one byte longer than it needs: valid protobuf, but
/// not what any encoder writes.
fn overlong_varint(value: u64, buf: &mut Vec<u8>) {
    let start = buf.len();
    prost::encoding::encode_varint(value, buf);
    *buf.last_mut().expect("a varint has a byte") |= 0x80;
    buf.push(0);
    debug_assert!(buf.len() - start >= 2);
}

/// A length-delimited field with its length overlong, and its key too when
/// `key_too`.
fn overlong_field(tag: u64, contents: &[u8], key_too: bool) -> Vec<u8> {
    let mut field = Vec::new();
    if key_too {
        overlong_varint(tag << 3 | 2, &mut field);
    } else {
        prost::encoding::encode_varint(tag << 3 | 2, &mut field);
    }
    overlong_varint(contents.len() as u64, &mut field);
    field.extend_from_slice(contents);
    field
}

proptest! {
    /// The fast paths that recognise the usual layout of a result step
    /// aside for other valid encodings: with every length, and maybe every
    /// key, written one byte too long, a result still decodes to its
    /// context, with or without the sent request to reuse.
    #[test]
    fn overlong_keys_and_lengths_decode_as_usual(ctx in context(), keys_too in any::<bool>()) {
        let encoded = ctx.encode_to_vec();
        let (request, response) = EncodedContext::new(&encoded).parts().unwrap();
        let context = [overlong_field(1, request, keys_too), overlong_field(2, response, keys_too)].concat();
        let result = overlong_field(1, &context, keys_too);
        prop_assert_eq!(RunResult::decode(&result[..]), Ok(RunResult::Context(ctx.clone())));
        prop_assert_eq!(Context::validate(&context), Ok(()));
        prop_assert_eq!(EncodedContext::new(&context).validate_against(EncodedContext::new(&encoded)), Ok(()));
        let mut into = Context::default();
        let mut kept = ctx.request.clone();
        let outcome = EncodedContext::new(&encoded).decode_result_reusing(&result, &mut into, &mut kept);
        prop_assert_eq!(outcome, Ok(None));
        prop_assert_eq!(&into, &ctx);
    }
}

/// One change to a header map, for the model test below.
#[derive(Debug, Clone)]
enum HeaderOp {
    Set(String, Vec<String>),
    Append(String, String),
    Remove(String),
    InsertRaw(String, Vec<String>),
    /// `Context::reset` (which keeps entries for reuse), then a decode.
    ResetAndDecode(Headers),
}

fn header_name() -> impl Strategy<Value = String> {
    // Few names, mixed case, so that operations meet the same header often.
    prop_oneof!["[aAbB]{1,2}", "[c-eC-E-]{0,3}", ".{0,6}"]
}

fn header_op() -> impl Strategy<Value = HeaderOp> {
    prop_oneof![
        (header_name(), vec(".{0,6}", 0..3)).prop_map(|(name, values)| HeaderOp::Set(name, values)),
        (header_name(), ".{0,6}").prop_map(|(name, value)| HeaderOp::Append(name, value)),
        header_name().prop_map(HeaderOp::Remove),
        (header_name(), vec(".{0,6}", 0..3)).prop_map(|(name, values)| HeaderOp::InsertRaw(name, values)),
        headers().prop_map(HeaderOp::ResetAndDecode),
    ]
}

proptest! {
    /// `Headers` behaves as a map from names to values ordered by name,
    /// with the accessors lower-casing names, whatever order changes come
    /// in and whatever entries it keeps for reuse.
    #[test]
    fn headers_behave_as_an_ordered_map(ops in vec(header_op(), 0..24)) {
        use std::collections::BTreeMap;
        let mut ctx = Context::default();
        let mut model: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for op in ops {
            let headers = &mut ctx.response.headers;
            match op {
                HeaderOp::Set(name, values) => {
                    headers.set(&name, values.clone());
                    model.insert(name.to_ascii_lowercase(), values);
                }
                HeaderOp::Append(name, value) => {
                    headers.append(&name, value.clone());
                    model.entry(name.to_ascii_lowercase()).or_default().push(value);
                }
                HeaderOp::Remove(name) => {
                    let expected = model.remove(&name).or_else(|| model.remove(&name.to_ascii_lowercase()));
                    prop_assert_eq!(headers.remove(&name), expected);
                }
                HeaderOp::InsertRaw(name, values) => {
                    prop_assert_eq!(headers.insert_raw(name.clone(), values.clone()), model.insert(name, values));
                }
                HeaderOp::ResetAndDecode(decoded) => {
                    let mut sent = Context::default();
                    sent.response.headers = decoded.clone();
                    ctx.reset();
                    ctx.decode_in_place(&sent.encode_to_vec()[..]).unwrap();
                    model = decoded.iter().map(|(name, values)| (name.to_string(), values.to_vec())).collect();
                }
            }
            let headers = &ctx.response.headers;
            let got: Vec<_> = headers.iter().map(|(name, values)| (name.to_string(), values.to_vec())).collect();
            let expected: Vec<_> = model.clone().into_iter().collect();
            prop_assert_eq!(&got, &expected);
            prop_assert_eq!(headers.len(), model.len());
            for (name, values) in &model {
                prop_assert_eq!(headers.get(name), Some(values.as_slice()));
            }
        }
    }
}

proptest! {
    /// Header entries may come in any order, a name more than once (the
    /// wire allows it): decoding gives what an ordered map gives, the last
    /// values of a name winning, through every way of decoding.
    #[test]
    fn header_entries_in_any_order_decode_as_an_ordered_map(
        entries in vec(("[a-dA-D]{1,2}", vec(".{0,6}", 0..3)), 0..40),
        used in context(),
    ) {
        use prost::Message;
        use std::collections::BTreeMap;

        let mut model = BTreeMap::new();
        let mut request = Vec::new();
        for (name, values) in &entries {
            // A default request holding one header encodes as that one entry.
            let mut one = Request::default();
            one.headers.insert_raw(name.clone(), values.clone());
            request.extend(one.encode_to_vec());
            model.insert(name.clone(), values.clone());
        }
        let expected: Vec<_> = model.into_iter().collect();
        let check = |headers: &Headers| -> Result<(), TestCaseError> {
            let got: Vec<_> = headers.iter().map(|(name, values)| (name.to_string(), values.to_vec())).collect();
            prop_assert_eq!(&got, &expected);
            for (name, values) in &expected {
                prop_assert_eq!(headers.get(name), Some(values.as_slice()));
            }
            Ok(())
        };

        check(&Request::decode(&request[..]).unwrap().headers)?;
        let mut into = used.request.clone();
        raw::decode_request_in_place(&mut into, &request[..]).unwrap();
        check(&into.headers)?;
        let mut context = Vec::new();
        EncodedContext::encode_parts_into(&request, &Response::default(), &mut context);
        check(&Context::decode(&context[..]).unwrap().request.headers)?;
        let mut into = used.clone();
        into.decode_in_place(&context[..]).unwrap();
        check(&into.request.headers)?;
        let mut result = Vec::new();
        EncodedContext::encode_parts_as_result_into(&request, &Response::default(), &mut result);
        let RunResult::Context(decoded) = RunResult::decode(&result[..]).unwrap() else { panic!("an error result") };
        check(&decoded.request.headers)?;
        // The same entries as a response's headers (field 3 instead of 7).
        let mut response = Vec::new();
        for (name, values) in &entries {
            let mut one = Response::default();
            one.headers.insert_raw(name.clone(), values.clone());
            response.extend(one.encode_to_vec());
        }
        check(&Response::decode(&response[..]).unwrap().headers)?;
        let mut into = used.response.clone();
        raw::decode_response_in_place(&mut into, &response[..]).unwrap();
        check(&into.headers)?;
    }
}

/// A response whose headers hold `names` names with `values` values each,
/// encoded as a context.
fn with_headers(names: usize, values: usize) -> Vec<u8> {
    let mut context = Context::default();
    for name in 0..names {
        let name = format!("x-{name}");
        context.response.headers.set(&name, (0..values).map(|value| value.to_string()));
    }
    context.encode_to_vec()
}

/// At most `MAX_HEADER_ITEMS` names and values together arrive in one
/// header map, however they are split over names; decoding and validating
/// agree on each side of the limit.
#[test]
fn header_maps_past_the_limit_do_not_decode() {
    let max = scale_signature_http::MAX_HEADER_ITEMS;
    for (names, values, fits) in [
        (1, max - 1, true),
        (1, max, false),
        (max / 2, 1, true),
        (max / 2 + 1, 1, false),
        (max, 0, true),
        (max + 1, 0, false),
        (64, max / 64 - 1, true),
        (64, max / 64, false),
    ] {
        let bytes = with_headers(names, values);
        assert_eq!(Context::decode(&bytes[..]).is_ok(), fits, "{names} names of {values} values");
        assert_eq!(Context::validate(&bytes).is_ok(), fits, "{names} names of {values} values");
        let mut into = Context::default();
        assert_eq!(into.decode_in_place(&bytes[..]).is_ok(), fits, "{names} names of {values} values");
    }
}
