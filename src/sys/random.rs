//! Random bytes from the kernel, for keys and unguessable names.

use std::io::{self, Read};

/// 32 bytes from the kernel's random source.
pub(crate) fn bytes32() -> io::Result<[u8; 32]> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes)
}
