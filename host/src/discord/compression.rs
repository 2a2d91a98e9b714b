//! `zlib-stream` transport compression: one zlib context for the whole connection.
//!
//! Why persistent: Discord compresses every payload of a connection as one stream, so the
//! dictionary carries over between messages; a fresh decompressor per message fails from
//! the second message on. A payload is complete when the buffered bytes end with the
//! sync-flush marker `00 00 ff ff`; a WebSocket message may also carry only part of one.

use flate2::{Decompress, FlushDecompress, Status};

/// The sync-flush suffix that ends each compressed payload.
const SUFFIX: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Why a compressed message could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InflateError {
    #[error("corrupt zlib stream: {0}")]
    Corrupt(String),
    #[error("decompressed payload over {0} bytes")]
    TooLarge(usize),
}

/// The per-connection decompressor.
pub struct Inflater {
    zlib: Decompress,
    pending: Vec<u8>,
    max: usize,
}

impl Inflater {
    /// A decompressor for a new connection; payloads over `max` bytes are refused.
    pub fn new(max: usize) -> Self {
        Self {
            zlib: Decompress::new(true),
            pending: Vec::new(),
            max,
        }
    }

    /// Feeds one binary WebSocket message; returns a whole payload once the suffix is seen.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Option<Vec<u8>>, InflateError> {
        self.pending.extend_from_slice(bytes);
        if self.pending.len() > self.max {
            return Err(InflateError::TooLarge(self.max));
        }
        if !self.pending.ends_with(&SUFFIX) {
            return Ok(None);
        }
        let input = std::mem::take(&mut self.pending);
        let mut out = Vec::with_capacity(input.len() * 4 + 64);
        let start = self.zlib.total_in();
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity());
            }
            let consumed = (self.zlib.total_in() - start) as usize;
            let status = self
                .zlib
                .decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync)
                .map_err(|e| InflateError::Corrupt(e.to_string()))?;
            if out.len() > self.max {
                return Err(InflateError::TooLarge(self.max));
            }
            let all_in = (self.zlib.total_in() - start) as usize == input.len();
            match status {
                Status::StreamEnd => break,
                _ if all_in && out.len() < out.capacity() => break,
                Status::BufError if all_in => break,
                _ => {}
            }
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};

    fn deflate(z: &mut Compress, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(input.len() + 64);
        z.compress_vec(input, &mut out, FlushCompress::Sync)
            .expect("compress");
        out
    }

    #[test]
    fn a_stream_of_payloads_is_inflated_with_one_context_even_when_split() {
        let mut z = Compress::new(Compression::default(), true);
        let mut inflater = Inflater::new(1 << 20);
        for i in 0..20 {
            let payload = format!(
                r#"{{"op":0,"s":{i},"t":"MESSAGE_CREATE","d":{{"content":"hello hello {i}"}}}}"#
            );
            let bytes = deflate(&mut z, payload.as_bytes());
            assert!(bytes.ends_with(&SUFFIX));
            let (a, b) = bytes.split_at(bytes.len() / 2);
            assert_eq!(inflater.push(a).expect("partial"), None);
            let out = inflater.push(b).expect("whole").expect("complete");
            assert_eq!(out, payload.as_bytes());
        }
    }

    #[test]
    fn garbage_and_oversize_are_refused() {
        let mut inflater = Inflater::new(1 << 20);
        assert!(matches!(
            inflater.push(&[1, 2, 3, 0, 0, 0xff, 0xff]),
            Err(InflateError::Corrupt(_))
        ));
        let mut z = Compress::new(Compression::default(), true);
        let big = vec![b'a'; 10_000];
        let mut small = Inflater::new(1000);
        assert!(matches!(
            small.push(&deflate(&mut z, &big)),
            Err(InflateError::TooLarge(1000))
        ));
    }
}
