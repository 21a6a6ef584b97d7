//! For the runtime and the SDKs; not a stable API.
//!
//! What hosts and guest authors use is at the top of the crate. This module
//! holds what the Scale runtime and the guest SDKs need besides, to take
//! shortcuts on every run: [`EncodedContext`] and the decoders of a lone
//! request or response (the layout fast paths), the encoders of a run
//! result that need no [`RunResult`](crate::RunResult), and
//! [`chunked_copy`]. Any of it may change in any release.

pub mod chunked_copy;
mod layout;

pub use crate::run_result::{encode_context_result_into, encode_error_result_into};
pub use layout::{EncodedContext, decode_request_in_place, decode_request_in_place_shared, decode_response_in_place};
