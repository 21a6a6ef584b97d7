//! A signature other than HTTP, end to end: the `tally` signature of the
//! `custom_signature` example (whose files these tests compile, rather than
//! a copy), the `tally` guest built for it, and the trait's default fast
//! paths, which the HTTP signature overrides and so never runs.

#[path = "../../examples/custom_signature/signature.rs"]
mod signature;
#[path = "../../examples/custom_signature/tally.rs"]
mod tally;

use scale_func::{Language, ScaleFunc};
use scale_runtime::scale_signature_http::{SIGNATURE_NAME, SIGNATURE_VERSION};
use scale_runtime::{Error, Instance, Runtime, Signature};

use crate::common::{Lang, builder, builder_for, fixture};
use tally::{Tally, WireError};

/// The signature as a `.scale` file records it.
fn tally_id() -> String {
    format!("{}@{}", Tally::NAME, Tally::VERSION)
}

/// A runtime of the tally signature running `functions` as a chain.
fn runtime(functions: impl IntoIterator<Item = ScaleFunc>) -> Runtime<Tally> {
    builder_for::<Tally>().functions(functions).build().unwrap()
}

/// The `tally` guest, `times` times over.
fn guests(times: usize) -> Vec<ScaleFunc> {
    vec![fixture(Lang::Rust, "tally"); times]
}

fn tally(count: u64, note: &str) -> Tally {
    Tally { count, note: note.into() }
}

/// Runs `instance` on `start` and returns the result.
fn run(instance: &mut Instance<Tally>, start: Tally) -> Result<Tally, Error> {
    instance.set_context(start);
    instance.run()?;
    Ok(instance.context().clone())
}

/// A native handler that multiplies the count by 10 and notes that it ran.
fn native(tally: &mut Tally) -> Result<(), scale_runtime::HandlerError> {
    tally.count *= 10;
    tally.note.push_str(" native");
    Ok(())
}

#[test]
fn two_guests_and_a_native_handler_count_in_chain_order() {
    let runtime = runtime(guests(2));
    let mut instance = runtime.instance().unwrap().with_handler(native);
    // In: 1 -> 2 -> 3; the handler: 30; out: 31 -> 32.
    assert_eq!(run(&mut instance, tally(1, "host")).unwrap(), tally(32, "host in in native out out"));
    // The instance runs again, from what it is given.
    assert_eq!(run(&mut instance, tally(5, "again")).unwrap(), tally(72, "again in in native out out"));
}

#[test]
fn a_chain_ending_without_handlers_hands_the_tally_back() {
    // The last guest's `next` is answered "unchanged" (ABI version 2) once
    // the default `validate` has decoded what it handed over; the guest
    // notes the answer.
    let mut instance = runtime(guests(2)).instance().unwrap();
    assert_eq!(run(&mut instance, tally(1, "host")).unwrap(), tally(5, "host in in (unchanged) out out"));

    // A guest of ABI version 1 is sent its tally back: the default
    // `encode_unchanged_result` makes the answer.
    let relay = relay_v1();
    let mut instance = runtime([relay.clone()]).instance().unwrap();
    assert_eq!(run(&mut instance, tally(7, "relayed")).unwrap(), tally(7, "relayed"));
    let mut instance = runtime([fixture(Lang::Rust, "tally"), relay.clone()]).instance().unwrap();
    assert_eq!(run(&mut instance, tally(7, "relayed")).unwrap(), tally(9, "relayed in out"));

    // With a handler after it, the version 1 guest gets the handler's tally.
    let mut instance = runtime([relay]).instance().unwrap().with_handler(native);
    assert_eq!(run(&mut instance, tally(7, "relayed")).unwrap(), tally(70, "relayed native"));
}

/// A guest of ABI version 1, recorded for the tally signature, that hands
/// its input to `next` and answers `run` with `next`'s answer.
fn relay_v1() -> ScaleFunc {
    let wat = r#"(module
        (import "env" "next" (func $next (param i32 i32 i32 i32) (result i32)))
        (memory (export "memory") 1)
        (func (export "scale_abi_version") (result i32) i32.const 1)
        (func (export "resize") (param i32) (result i32) i32.const 1024)
        (func (export "run") (param $len i32) (result i64)
            (local $n i32)
            (local.set $n (call $next (i32.const 1024) (local.get $len) (i32.const 8192) (i32.const 8192)))
            (if (i32.le_s (local.get $n) (i32.const 0)) (then unreachable))
            (i64.or (i64.shl (i64.const 8192) (i64.const 32)) (i64.extend_i32_u (local.get $n)))))"#;
    let wasm = wasmer::wat2wasm(wat.as_bytes()).unwrap().into_owned();
    let signature = scale_func::SignatureId::new(Tally::NAME, Tally::VERSION).unwrap();
    ScaleFunc::new("relay", "test", signature, Language::Rust, wasm).unwrap()
}

#[test]
fn a_guest_error_is_error_guest_and_keeps_the_instance() {
    let runtime = runtime(guests(1));
    let mut instance = runtime.instance().unwrap();
    match run(&mut instance, tally(1, "fail")) {
        Err(Error::Guest { function, message }) => {
            assert_eq!(function, "tally");
            assert_eq!(message, "tally: the note asks to fail");
        }
        other => panic!("expected Error::Guest, got {other:?}"),
    }
    assert_eq!(run(&mut instance, tally(1, "fine")).unwrap(), tally(3, "fine in (unchanged) out"));
    assert_eq!(runtime.pool_stats().discarded, 0, "a guest error is a normal outcome");
}

#[test]
fn a_handler_error_is_passed_on_by_both_guests() {
    let runtime = runtime(guests(2));
    let mut instance = runtime
        .instance()
        .unwrap()
        .with_handler(native)
        .with_handler(|tally: &mut Tally| Err(format!("no room for {}", tally.count).into()));
    match run(&mut instance, tally(1, "host")) {
        Err(Error::Handler { index, source }) => {
            assert_eq!(index, 1);
            assert_eq!(source.to_string(), "no room for 30");
        }
        other => panic!("expected Error::Handler, got {other:?}"),
    }
}

#[test]
fn each_signature_refuses_the_others_functions() {
    let http_id = format!("{SIGNATURE_NAME}@{SIGNATURE_VERSION}");
    assert_eq!(fixture(Lang::Rust, "tally").signature().to_string(), tally_id());
    let refused = builder_for::<Tally>().function(fixture(Lang::Rust, "passthrough")).build().unwrap_err();
    assert_eq!(mismatch(refused), ("passthrough".into(), tally_id(), http_id.clone()));
    let refused = builder().function(fixture(Lang::Rust, "tally")).build().unwrap_err();
    assert_eq!(mismatch(refused), ("tally".into(), http_id, tally_id()));
}

/// The function, expected and found signatures of a [`Error::SignatureMismatch`].
fn mismatch(err: Error) -> (String, String, String) {
    match err {
        Error::SignatureMismatch { function, expected, found } => (function, expected, found),
        other => panic!("expected Error::SignatureMismatch, got {other:?}"),
    }
}

#[test]
fn pooled_guests_on_several_threads_count_every_run_right() {
    const THREADS: u64 = 4;
    const RUNS: u64 = 60;
    let runtime = runtime(guests(2));
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let runtime = &runtime;
            scope.spawn(move || {
                let mut instance = runtime.instance().unwrap().with_handler(native);
                for run_number in 0..RUNS {
                    let start = tally(thread * 1000 + run_number, &format!("thread {thread} run {run_number}"));
                    let expected = tally(
                        (start.count + 2) * 10 + 2,
                        &format!("thread {thread} run {run_number} in in native out out"),
                    );
                    assert_eq!(run(&mut instance, start).unwrap(), expected);
                    // Now and then give the guests back and take others, so
                    // pooled guests move between threads.
                    if run_number % 7 == 6 {
                        drop(instance);
                        instance = runtime.instance().unwrap().with_handler(native);
                    }
                }
            });
        }
    });
    let stats = runtime.pool_stats();
    assert_eq!(stats.discarded, 0, "healthy instances are kept: {stats:?}");
    assert!(stats.reused > 0, "pooled instances are reused: {stats:?}");
    // One instance of each guest made at load time, plus at most one per thread at a time.
    assert!(stats.created <= 2 * (1 + THREADS), "the pool is reused: {stats:?}");
}

#[test]
fn a_result_the_decoder_refuses_is_malformed_output() {
    let runtime = runtime(guests(1));
    let mut instance = runtime.instance().unwrap();
    match run(&mut instance, tally(1, "garbage")) {
        Err(Error::MalformedOutput { function, what }) => {
            assert_eq!(function, "tally");
            let expected = WireError::Truncated { field: "note" }.to_string();
            assert!(what.contains("does not decode") && what.contains(&expected), "{what}");
        }
        other => panic!("expected Error::MalformedOutput, got {other:?}"),
    }
    // The guest that broke the ABI is replaced; the next run gets a fresh one.
    assert_eq!(run(&mut instance, tally(1, "fine")).unwrap(), tally(3, "fine in (unchanged) out"));
    assert_eq!(runtime.pool_stats().discarded, 1);
}

/// Encodings of a tally, a successful outcome and an error outcome.
fn encodings() -> [Vec<u8>; 3] {
    let sample = tally(u64::MAX - 3, "a note: ünïcödé, \0 and all");
    let (mut context, mut ok, mut err) = (Vec::new(), Vec::new(), Vec::new());
    sample.encode(&mut context);
    Tally::encode_result(Ok(&sample), &mut ok);
    Tally::encode_result(Err("it failed"), &mut err);
    [context, ok, err]
}

/// Decodes `bytes` as a tally (`as_outcome` false) or an outcome, and
/// encodes what came out back.
fn reencode(bytes: &[u8], as_outcome: bool) -> Result<Vec<u8>, WireError> {
    let mut decoded = Tally::default();
    let mut again = Vec::new();
    if as_outcome {
        match decoded.decode_result(bytes)? {
            Ok(()) => Tally::encode_result(Ok(&decoded), &mut again),
            Err(message) => Tally::encode_result(Err(&message), &mut again),
        }
    } else {
        decoded.decode(bytes)?;
        decoded.encode(&mut again);
    }
    Ok(again)
}

#[test]
fn the_decoders_refuse_every_malformed_input() {
    for (index, bytes) in encodings().iter().enumerate() {
        let as_outcome = index > 0;
        assert_eq!(reencode(bytes, as_outcome).as_ref(), Ok(bytes), "round trip {index}");
        // Every prefix is refused, and so is one byte more.
        for end in 0..bytes.len() {
            assert!(reencode(&bytes[..end], as_outcome).is_err(), "encoding {index} cut at {end}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(reencode(&longer, as_outcome), Err(WireError::TrailingBytes(1)));
        // Any byte changed to any value decodes to exactly those bytes, or is refused.
        for at in 0..bytes.len() {
            for value in 0..=u8::MAX {
                let mut changed = bytes.clone();
                changed[at] = value;
                if let Ok(again) = reencode(&changed, as_outcome) {
                    assert_eq!(again, changed, "encoding {index} with byte {at} set to {value}");
                }
            }
        }
    }
    let [context, ok, _] = encodings();
    // A note that claims more bytes than there are, and one that is not UTF-8.
    let mut claims_too_much = context[..8].to_vec();
    claims_too_much.extend_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(reencode(&claims_too_much, false), Err(WireError::Truncated { field: "note" }));
    let mut not_utf8 = context[..8].to_vec();
    not_utf8.extend_from_slice(&[2, 0, 0, 0, 0xc3, 0x28]);
    assert_eq!(reencode(&not_utf8, false), Err(WireError::NotUtf8 { field: "note" }));
    let mut unknown_tag = ok.clone();
    unknown_tag[0] = 2;
    assert_eq!(reencode(&unknown_tag, true), Err(WireError::UnknownTag(2)));
}

#[test]
fn the_default_fast_paths_agree_with_the_four_methods() {
    let [context, ok, err] = encodings();
    let mut decoded = Tally::default();
    decoded.decode(&context).unwrap();

    // `validate` accepts exactly what `decode` accepts, whatever was sent.
    assert_eq!(Tally::validate(&context, &context), Ok(()));
    let cut = &context[..context.len() - 1];
    assert_eq!(Tally::validate(cut, &context), Err(WireError::Truncated { field: "note" }));

    // `encode_unchanged_result` is `encode_result` of the decoded tally.
    let mut unchanged = Vec::new();
    Tally::encode_unchanged_result(&context, &mut unchanged).unwrap();
    assert_eq!(unchanged, ok);
    assert!(Tally::encode_unchanged_result(&ok, &mut Vec::new()).is_err());

    // `decode_result_reusing` is `decode_result`, and leaves `previous` alone.
    let mut previous = tally(1, "previous");
    let mut reused = Tally::default();
    assert_eq!(reused.decode_result_reusing(&ok, &context, &mut previous), Ok(Ok(())));
    assert_eq!(reused, decoded);
    assert_eq!(reused.decode_result_reusing(&err, &context, &mut previous), Ok(Err("it failed".into())));
    assert_eq!(previous, tally(1, "previous"));

    // `reset` is the default tally.
    reused.reset();
    assert_eq!(reused, Tally::default());
}
