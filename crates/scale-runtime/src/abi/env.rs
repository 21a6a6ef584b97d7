//! The host functions of the `env` module and the state they share: what a
//! guest's `next`, `next_result` and `panic` imports do.

use wasmer::{FunctionEnvMut, Memory};

use crate::abi::memory::{guest_bytes, range_in, read_vec, write_guest};
use crate::abi::versions;
use crate::chain::Chain;
use crate::deadline;
use crate::error::Error;
use crate::limits::{grow_refused, set_grow_refused};
use crate::meter::{Meter, charge};
use crate::signature::Signature;
use crate::trap::{HostTrap, printable};

/// The host state of one guest instance, reachable from its imports.
pub(crate) struct GuestEnv<S: Signature> {
    /// The guest's memory, once instantiation has made it.
    pub memory: Option<Memory>,
    /// The rest of the chain, present only while this guest runs.
    pub rest: Option<Chain<S>>,
    /// The first failure further down the chain during this run.
    pub rest_failure: Option<Error>,
    /// An answer to `next` that did not fit the guest's buffer.
    pub pending_answer: Option<Vec<u8>>,
    /// Scratch space for encoding answers to `next`.
    pub answer_buffer: Vec<u8>,
    /// The context `next` decodes into, kept for the next call.
    pub next_context: Option<S>,
    /// What the guest reported through `env.panic` during this run.
    pub panic_message: Option<String>,
    /// The ABI version the guest speaks (1 until it has said).
    pub abi: u32,
    /// The context this run was given, as encoded by the host, while the
    /// guest runs (for `Signature::validate`).
    pub sent: Vec<u8>,
    /// The guest's CPU budget, when it is metered.
    pub meter: Option<Meter>,
}

impl<S: Signature> GuestEnv<S> {
    pub fn new() -> Self {
        Self {
            memory: None,
            rest: None,
            rest_failure: None,
            pending_answer: None,
            answer_buffer: Vec::new(),
            next_context: None,
            panic_message: None,
            abi: versions::OLDEST,
            sent: Vec::new(),
            meter: None,
        }
    }

    /// Forgets everything from the previous run.
    pub fn reset(&mut self) {
        self.rest_failure = None;
        self.pending_answer = None;
        self.panic_message = None;
    }
}

/// `env.next(ptr, len, out_ptr, out_cap) -> i32`.
pub(crate) fn host_next<S: Signature>(
    mut env: FunctionEnvMut<'_, GuestEnv<S>>,
    ptr: u32,
    len: u32,
    out_ptr: u32,
    out_cap: u32,
) -> Result<i32, HostTrap> {
    let (data, mut store) = env.data_and_store_mut();
    let memory =
        data.memory.clone().ok_or_else(|| HostTrap::Malformed("next called before instantiation finished".into()))?;
    // Where the chain ends with no native handlers, `next` hands the context
    // back unchanged: the guest's own bytes are the answer, once checked. A
    // guest of ABI version 2 is told so (the answer 0) instead of being sent
    // its bytes back.
    let unchanged = match &data.rest {
        None => true,
        Some(Chain::Handlers(handlers)) => handlers.is_empty(),
        Some(Chain::Guest(_)) => false,
    };
    let say_unchanged = unchanged && data.abi >= versions::UNCHANGED_ANSWER;
    let mut answer = std::mem::take(&mut data.answer_buffer);
    answer.clear();
    let mut ctx = if unchanged { None } else { Some(data.next_context.take().unwrap_or_default()) };
    {
        let view = memory.view(&store);
        if !range_in(&view, ptr, len) || !range_in(&view, out_ptr, out_cap) {
            return Err(HostTrap::Malformed(format!(
                "next({ptr:#x}, {len}, {out_ptr:#x}, {out_cap}) points outside the {}-byte memory",
                view.data_size()
            )));
        }
        // SAFETY: as in `Guest::invoke`: the slice lives only while
        // the context is decoded or copied (keeping nothing borrowed). This
        // guest is suspended inside this import, no other code can reach its
        // memory (the store is borrowed here, one thread at a time), and
        // nothing grows the memory meanwhile.
        let memory = unsafe { view.data_unchecked() };
        let input = guest_bytes(memory, ptr, len)
            .ok_or_else(|| HostTrap::Malformed("next: the context lies outside the guest's memory".into()))?;
        match &mut ctx {
            None if say_unchanged => S::validate(input, &data.sent),
            None => S::encode_unchanged_result(input, &mut answer),
            Some(ctx) => ctx.decode(input),
        }
        .map_err(|err| HostTrap::Malformed(format!("next was handed a context that does not decode: {err}")))?;
    }

    // The bytes read count against the run's budget. A guest with no
    // points left (or past the deadline) stops here: the rest of the chain
    // does not run.
    charge(data.meter.as_ref(), u64::from(len));
    if let Some(meter) = &data.meter
        && meter.get() < 0
    {
        meter.note_out_of_points(&mut store);
        if let Some(ctx) = ctx {
            data.next_context = Some(ctx);
        }
        data.answer_buffer = answer;
        return Err(HostTrap::OutOfTime);
    }
    if let Some(mut ctx) = ctx {
        // The rest of the chain may trap on memory growth of its own; keep
        // this guest's record of refused growth apart from theirs.
        let refused = grow_refused();
        // It runs on what this guest has left of the run's budget, and
        // hands back what it leaves.
        let mut points = data.meter.as_ref().map_or(0, Meter::get);
        let result = match data.rest.as_mut() {
            Some(rest) => rest.run(&mut ctx, &mut points),
            None => Ok(()),
        };
        if let Some(meter) = &data.meter {
            meter.set(points);
        }
        set_grow_refused(refused);
        let ran_out = matches!(result, Err(Error::CpuBudget { .. } | Error::Deadline { .. }));
        let abandoned = matches!(result, Err(Error::Abandoned));
        match result {
            Ok(()) => S::encode_result(Ok(&ctx), &mut answer),
            Err(err) => {
                S::encode_result(Err(&err.to_string()), &mut answer);
                if data.rest_failure.is_none() {
                    data.rest_failure = Some(err);
                }
            }
        }
        // Reset now, so that a pooled guest does not keep the last body alive.
        ctx.reset();
        data.next_context = Some(ctx);
        // Nobody waits for the run any more: no guest code runs after this.
        if abandoned {
            data.answer_buffer = answer;
            return Err(HostTrap::Abandoned);
        }
        // The rest of the chain used up the run's budget or ran past its
        // deadline: the run has failed, and this guest stops too.
        if let Some(meter) = &data.meter
            && (ran_out || points < 0 || deadline::passed())
        {
            meter.note_out_of_points(&mut store);
            data.answer_buffer = answer;
            return Err(HostTrap::OutOfTime);
        }
    }
    if say_unchanged {
        data.answer_buffer = answer;
        return Ok(0);
    }
    let n = i32::try_from(answer.len()).map_err(|_| HostTrap::Malformed("next: the answer exceeds 2 GiB".into()))?;
    charge(data.meter.as_ref(), answer.len() as u64);
    if answer.len() <= out_cap as usize {
        // SAFETY: the slice read above is gone; this guest is suspended in
        // this import, and the rest of the chain has returned.
        unsafe { write_guest(&memory.view(&store), out_ptr, &answer) }
            .map_err(|err| HostTrap::Malformed(format!("next: {err}")))?;
        data.answer_buffer = answer;
        Ok(n)
    } else {
        data.pending_answer = Some(answer);
        Ok(-n)
    }
}

/// `env.next_result(out_ptr, out_cap) -> i32`.
pub(crate) fn host_next_result<S: Signature>(
    mut env: FunctionEnvMut<'_, GuestEnv<S>>,
    out_ptr: u32,
    out_cap: u32,
) -> Result<i32, HostTrap> {
    let (data, store) = env.data_and_store_mut();
    let Some(answer) = data.pending_answer.take() else { return Ok(0) };
    charge(data.meter.as_ref(), answer.len() as u64);
    let n = answer.len() as i32;
    if answer.len() > out_cap as usize {
        data.pending_answer = Some(answer);
        return Ok(-n);
    }
    let memory = data
        .memory
        .clone()
        .ok_or_else(|| HostTrap::Malformed("next_result called before instantiation finished".into()))?;
    let view = memory.view(&store);
    if !range_in(&view, out_ptr, out_cap) {
        return Err(HostTrap::Malformed(format!(
            "next_result({out_ptr:#x}, {out_cap}) points outside the {}-byte memory",
            view.data_size()
        )));
    }
    // SAFETY: no slice of the memory is alive, and this guest is suspended
    // in this import.
    unsafe { write_guest(&view, out_ptr, &answer) }
        .map_err(|err| HostTrap::Malformed(format!("next_result: {err}")))?;
    data.answer_buffer = answer;
    Ok(n)
}

/// The longest panic message kept.
const PANIC_MESSAGE_LIMIT: u32 = 16 * 1024;

/// `env.panic(ptr, len)`. A message that lies outside memory or is not
/// UTF-8 is replaced by a description of the problem; control characters
/// are escaped (see [`printable`]), so that a message never carries raw
/// control sequences to a terminal.
pub(crate) fn host_panic<S: Signature>(mut env: FunctionEnvMut<'_, GuestEnv<S>>, ptr: u32, len: u32) {
    let (data, store) = env.data_and_store_mut();
    charge(data.meter.as_ref(), u64::from(len.min(PANIC_MESSAGE_LIMIT)));
    let Some(memory) = data.memory.clone() else { return };
    let view = memory.view(&store);
    let message = if !range_in(&view, ptr, len) {
        format!("<panic message of {len} bytes at {ptr:#x} lies outside the guest's {}-byte memory>", view.data_size())
    } else {
        let kept = len.min(PANIC_MESSAGE_LIMIT);
        match read_vec(&view, ptr, kept) {
            Ok(bytes) => match std::str::from_utf8(&bytes) {
                Ok(text) => printable(text),
                // A message cut at the limit may end inside a character.
                Err(err) if kept < len && err.error_len().is_none() => printable(&String::from_utf8_lossy(&bytes)),
                Err(err) => {
                    format!("<panic message of {len} bytes is not UTF-8: invalid byte at offset {}>", err.valid_up_to())
                }
            },
            Err(err) => format!("<panic message unreadable: {err}>"),
        }
    };
    data.panic_message = Some(message);
}
