//! Property tests: encoding then decoding gives back the value; decoding any
//! bytes gives a value or an error, never a panic.

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use scale_signature_http::{Bytes, Context, Headers, Request, Response, RunResult};

fn headers() -> impl Strategy<Value = Headers> {
    btree_map(".{0,12}", vec(".{0,16}", 0..4), 0..5).prop_map(|map| map.into_iter().collect())
}

fn request() -> impl Strategy<Value = Request> {
    ((".{0,8}", ".{0,40}", any::<u64>(), ".{0,10}", ".{0,15}"), vec(any::<u8>(), 0..512), headers()).prop_map(
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
    (any::<u16>(), vec(any::<u8>(), 0..512), headers()).prop_map(|(status_code, body, headers)| Response {
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
