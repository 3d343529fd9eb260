//! The build fingerprint: what tells a child that it is the very build its parent is.
//!
//! Functions are sent to children as offsets inside the executable, which only mean something in
//! the same build. The fingerprint is the linker's GNU build-id note when the executable has one
//! (read from memory, so it costs microseconds) and otherwise a hash of the executable file.

use std::hash::Hasher;
use std::sync::OnceLock;

/// This executable's fingerprint, computed once per process.
pub(crate) fn fingerprint() -> &'static [u8] {
    static FINGERPRINT: OnceLock<Vec<u8>> = OnceLock::new();
    FINGERPRINT.get_or_init(|| gnu_build_id().unwrap_or_else(hash_of_executable))
}

const NT_GNU_BUILD_ID: u32 = 3;

/// The main executable's `NT_GNU_BUILD_ID` note, if it has one.
fn gnu_build_id() -> Option<Vec<u8>> {
    let mut found: Option<Vec<u8>> = None;
    // SAFETY: dl_iterate_phdr calls `callback` synchronously with a pointer to a valid
    // dl_phdr_info for each loaded object, and passes our `found` pointer through untouched; the
    // callback returns non-zero after the first object (the executable) to stop the walk.
    unsafe {
        libc::dl_iterate_phdr(Some(callback), (&raw mut found).cast());
    }
    found
}

unsafe extern "C" fn callback(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: per dl_iterate_phdr's contract `info` is valid for this call, and `data` is the
    // `&mut Option<Vec<u8>>` that gnu_build_id passed in.
    let (info, found) = unsafe { (&*info, &mut *data.cast::<Option<Vec<u8>>>()) };
    for i in 0..usize::from(info.dlpi_phnum) {
        // SAFETY: `dlpi_phdr` points at `dlpi_phnum` program headers.
        let phdr = unsafe { &*info.dlpi_phdr.add(i) };
        if phdr.p_type != libc::PT_NOTE {
            continue;
        }
        let start = (info.dlpi_addr as usize).wrapping_add(phdr.p_vaddr as usize);
        // SAFETY: a PT_NOTE segment is mapped readable at load address + p_vaddr for p_memsz bytes.
        let notes = unsafe { std::slice::from_raw_parts(start as *const u8, phdr.p_memsz as usize) };
        if let Some(id) = find_build_id(notes) {
            *found = Some(id.to_vec());
            break;
        }
    }
    1 // the first object is the executable; stop here
}

/// Walks ELF notes (4-byte aligned name and descriptor) looking for GNU's build-id.
fn find_build_id(mut notes: &[u8]) -> Option<&[u8]> {
    let word = |b: &[u8]| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
    let align4 = |n: usize| (n + 3) & !3;
    while notes.len() >= 12 {
        let (namesz, descsz, kind) = (word(notes) as usize, word(&notes[4..]) as usize, word(&notes[8..]));
        let name_end = 12 + align4(namesz);
        let desc_end = name_end + align4(descsz);
        if desc_end > notes.len() {
            return None;
        }
        if kind == NT_GNU_BUILD_ID && &notes[12..12 + namesz] == b"GNU\0" {
            return Some(&notes[name_end..name_end + descsz]);
        }
        notes = &notes[desc_end..];
    }
    None
}

/// Fallback for executables linked without a build-id: a hash of the whole file. If the file
/// cannot be read, a fingerprint unique to this process: children started by exec then refuse
/// to run (a clear build-mismatch error) rather than trust that they are the same build — two
/// unreadable executables must never look alike.
fn hash_of_executable() -> Vec<u8> {
    let Ok(bytes) = std::fs::read("/proc/self/exe") else {
        use std::hash::BuildHasher;
        let mut unique = std::collections::hash_map::RandomState::new().build_hasher();
        unique.write_u32(std::process::id());
        unique
            .write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
        return [b"unreadable:".as_slice(), &unique.finish().to_le_bytes()].concat();
    };
    let mut a = std::hash::DefaultHasher::new();
    a.write(&bytes);
    let mut b = std::hash::DefaultHasher::new();
    b.write_u64(bytes.len() as u64);
    b.write(&bytes);
    [a.finish().to_le_bytes(), b.finish().to_le_bytes()].concat()
}

#[cfg(test)]
mod tests {
    #[test]
    fn fingerprint_is_stable_and_nonempty() {
        let first = super::fingerprint();
        assert!(!first.is_empty());
        assert_eq!(first, super::fingerprint());
    }

    #[test]
    fn note_parser_finds_gnu_build_id() {
        let mut note = Vec::new();
        note.extend_from_slice(&4u32.to_ne_bytes());
        note.extend_from_slice(&3u32.to_ne_bytes());
        note.extend_from_slice(&3u32.to_ne_bytes());
        note.extend_from_slice(b"GNU\0");
        note.extend_from_slice(&[7, 8, 9, 0]);
        assert_eq!(super::find_build_id(&note), Some(&[7u8, 8, 9][..]));
        assert_eq!(super::find_build_id(&note[..14]), None);
    }
}
