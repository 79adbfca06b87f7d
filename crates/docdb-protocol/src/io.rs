//! Blocking frame I/O for clients and tools: the length is checked against
//! [`MAX_FRAME`] before anything is allocated.

use std::io::{self, Read, Write};

use crate::MAX_FRAME;

/// Reads one length-prefixed frame. `Ok(None)` on a clean end of stream before the
/// length.
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "frame size exceeds maximum",
        ));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)?;
    Ok(Some(buf))
}

/// Writes already length-prefixed bytes (from `encode_request`/`encode_response`).
pub fn write_all(w: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    w.write_all(bytes)?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_lengths_are_refused_before_allocating() {
        let mut src: &[u8] = &u32::MAX.to_le_bytes();
        assert!(read_frame(&mut src).is_err());
        let mut empty: &[u8] = &[];
        assert!(read_frame(&mut empty).unwrap().is_none());
        let mut ok: &[u8] = &[2, 0, 0, 0, 9, 9];
        assert_eq!(read_frame(&mut ok).unwrap(), Some(vec![9, 9]));
    }
}
