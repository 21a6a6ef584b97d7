//! The input of the regex workload, shared by `benches/workloads.rs` and
//! `examples/regex_loop.rs`.

/// `len` bytes of ASCII text: words of 1 to 9 letters, mostly separated by
/// spaces, sometimes by punctuation or a newline. The same every time.
pub fn text(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        // xorshift64
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        let word_len = 1 + (next() % 9) as usize;
        for _ in 0..word_len {
            out.push(b'a' + (next() % 26) as u8);
        }
        out.push(match next() % 16 {
            0 => b'\n',
            1 => b',',
            2 => b'.',
            _ => b' ',
        });
    }
    out.truncate(len);
    out
}
