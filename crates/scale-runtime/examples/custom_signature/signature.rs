//! [`Tally`] as a [`Signature`]: the four required methods, each handing
//! over to the wire format of the sibling `tally` module. The fast paths
//! (`reset`, `validate`, `encode_unchanged_result`, `decode_result_reusing`)
//! keep the trait's defaults, which are built on these four.

use scale_runtime::Signature;

use super::tally::{Tally, WireError, read_outcome, write_outcome};

impl Signature for Tally {
    /// Recorded in the guest's `.scale` file as `tally@v1`; `cargo xtask
    /// fixtures` records the same for the `tally` fixture.
    const NAME: &'static str = "tally";
    const VERSION: &'static str = "v1";

    type Error = WireError;

    fn encode(&self, buf: &mut Vec<u8>) {
        self.write(buf);
    }

    fn decode(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        self.read(bytes)
    }

    fn encode_result(result: Result<&Self, &str>, buf: &mut Vec<u8>) {
        write_outcome(result, buf);
    }

    fn decode_result(&mut self, bytes: &[u8]) -> Result<Result<(), String>, WireError> {
        read_outcome(self, bytes)
    }
}
