//! Random bytes from the kernel, for keys and unguessable names.

use std::io;

/// 32 bytes from the kernel's random source (`getrandom`: no descriptor needed, so it works in a
/// sandbox or a process out of descriptors).
pub(crate) fn bytes32() -> io::Result<[u8; 32]> {
    let mut bytes = [0u8; 32];
    let mut filled = 0;
    while filled < bytes.len() {
        match rustix::rand::getrandom(&mut bytes[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(bytes)
}
