//! Shared state: Value and Array under their locks across processes, owner death, raw forms,
//! SharedMemory by name — attach, unlink, and nothing left in /dev/shm after a crash — and
//! ShareableList and SharedMemoryManager.

mod common;

use std::path::Path;
use std::time::Duration;

use common::watchdog;
use multiproc::shm::{Array, BlockKeeper, RawArray, RawValue, ShareableList, SharedMemory, SharedMemoryManager, Value};
use multiproc::{Context, ErrorKind, Process, Queue, StartMethod};

fn add_many(counter: Value<u64>, times: u32) {
    for _ in 0..times {
        *counter.lock().unwrap() += 1;
    }
}

per_method!(values_travel_and_their_lock_keeps_counts_exact, a_named_segment_is_shared_by_name);

fn values_travel_and_their_lock_keeps_counts_exact(method: StartMethod) {
    let _w = watchdog(60);
    let counter = Value::new(0u64).unwrap();
    let ctx = Context::new(method);
    let mut workers: Vec<_> = (0..4).map(|_| ctx.spawn(add_many, (counter.clone(), 2_000)).unwrap()).collect();
    for w in &mut workers {
        w.join().unwrap();
    }
    assert_eq!(counter.get(), 8_000);
}

fn fill_stripe(squares: Array<u64>, start: usize, step: usize) {
    let mut i = start;
    while i < squares.len() {
        squares.set(i, (i * i) as u64);
        i += step;
    }
}

#[test]
fn an_array_is_filled_by_several_processes() {
    let _w = watchdog(60);
    let squares = Array::<u64>::new(1_000).unwrap();
    let mut workers: Vec<_> = (0..4).map(|w| Process::spawn(fill_stripe, (squares.clone(), w, 4)).unwrap()).collect();
    for w in &mut workers {
        w.join().unwrap();
    }
    assert_eq!(squares.to_vec(), (0..1_000u64).map(|i| i * i).collect::<Vec<_>>());
    let mut guard = squares.lock().unwrap();
    guard.reverse();
    assert_eq!(guard[0], 999 * 999);
}

fn die_holding(v: Value<[u32; 2]>, held: Queue<()>) {
    let mut guard = v.lock().unwrap();
    guard[0] = 1; // half of an update the dead process never finishes
    held.put(()).unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn a_holder_that_dies_leaves_the_value_usable_and_says_so() {
    let _w = watchdog(60);
    let v = Value::new([0u32; 2]).unwrap();
    let held = Queue::new().unwrap();
    let mut child = Process::spawn(die_holding, (v.clone(), held.clone())).unwrap();
    held.get().unwrap();
    child.kill().unwrap();
    let _ = child.join();
    match v.lock() {
        Ok(_) => panic!("the owner's death went unnoticed"),
        Err(died) => {
            assert_eq!(died.pid(), child.pid());
            let mut guard = died.into_guard();
            assert_eq!(*guard, [1, 0], "the dead holder's partial write is visible for repair");
            guard[1] = 1;
        }
    }
    assert_eq!(v.get(), [1, 1]);
    v.set([5, 5]);
    assert_eq!(v.get(), [5, 5]);
}

fn raw_write(flag: RawValue<u32>, items: RawArray<i16>) {
    items.set(1, -7);
    flag.set(1);
}

#[test]
fn raw_forms_are_shared_without_a_lock() {
    let _w = watchdog(60);
    let (flag, items) = (RawValue::new(0u32).unwrap(), RawArray::<i16>::new(3).unwrap());
    let mut child = Process::spawn(raw_write, (flag.clone(), items.clone())).unwrap();
    child.join().unwrap();
    assert_eq!((flag.get(), items.to_vec()), (1, vec![0, -7, 0]));
}

#[test]
#[should_panic(expected = "out of bounds")]
fn out_of_range_elements_panic_like_slices() {
    Array::<u8>::new(2).unwrap().get(2);
}

fn write_greeting(name: String) {
    let shm = SharedMemory::attach(&name).unwrap();
    shm.write_at(0, b"hello from a child").unwrap();
}

fn a_named_segment_is_shared_by_name(method: StartMethod) {
    let _w = watchdog(60);
    let shm = SharedMemory::create(None, 1 << 20).unwrap();
    let name = shm.name().unwrap().to_string();
    assert!(Path::new("/dev/shm").join(&name).exists());
    Context::new(method).spawn(write_greeting, (name.clone(),)).unwrap().join().unwrap();
    let mut buf = [0u8; 18];
    shm.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"hello from a child");
    shm.unlink().unwrap();
    assert!(!Path::new("/dev/shm").join(&name).exists());
    let err = SharedMemory::attach(&name).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Os);
    assert!(shm.unlink().is_err(), "a second unlink reports the name is gone");
}

fn read_anonymous(shm: SharedMemory) -> Vec<u8> {
    let mut buf = vec![0u8; shm.len()];
    shm.read_at(0, &mut buf).unwrap();
    shm.write_at(0, &[9]).unwrap();
    buf
}

#[test]
fn an_anonymous_segment_travels_as_a_handle() {
    let _w = watchdog(60);
    let shm = SharedMemory::anonymous(4).unwrap();
    shm.write_at(0, &[1, 2, 3, 4]).unwrap();
    let got = Process::spawn(read_anonymous, (shm.clone(),)).unwrap().join().unwrap();
    assert_eq!(got, [1, 2, 3, 4]);
    let mut first = [0u8; 1];
    shm.read_at(0, &mut first).unwrap();
    assert_eq!(first, [9]);
}

#[test]
fn bad_names_sizes_and_foreign_segments_are_clear_errors() {
    for bad in ["", "a/b", "..", &"x".repeat(300)] {
        assert_eq!(SharedMemory::create(Some(bad), 8).unwrap_err().kind(), ErrorKind::InvalidInput, "{bad:?}");
    }
    assert_eq!(SharedMemory::create(None, usize::MAX).unwrap_err().kind(), ErrorKind::InvalidInput);
    let shm = SharedMemory::create(None, 8).unwrap();
    assert_eq!(SharedMemory::create(shm.name(), 8).unwrap_err().kind(), ErrorKind::Os, "the name is taken");
    assert_eq!(shm.write_at(4, &[0; 5]).unwrap_err().kind(), ErrorKind::InvalidInput);
    shm.unlink().unwrap();
    // A segment made by someone else, without our header.
    let foreign = format!("mp-foreign-{}", std::process::id());
    std::fs::write(Path::new("/dev/shm").join(&foreign), vec![0u8; 4096]).unwrap();
    assert_eq!(SharedMemory::attach(&foreign).unwrap_err().kind(), ErrorKind::InvalidInput);
    std::fs::remove_file(Path::new("/dev/shm").join(&foreign)).unwrap();
}

fn create_and_wait(names: Queue<String>) {
    let shm = SharedMemory::create(None, 4096).unwrap();
    names.put(shm.name().unwrap().to_string()).unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn a_segment_whose_creator_is_killed_is_cleaned_up() {
    let _w = watchdog(60);
    let names = Queue::new().unwrap();
    let mut child = Process::spawn(create_and_wait, (names.clone(),)).unwrap();
    let name = names.get().unwrap();
    let path = Path::new("/dev/shm").join(&name);
    assert!(path.exists());
    child.kill().unwrap();
    let _ = child.join();
    // The cleaner sees its creator gone and unlinks the name (the watchdog fails a hang).
    while path.exists() {
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn create_and_leave(names: Queue<String>) {
    let shm = SharedMemory::create(None, 4096).unwrap();
    names.put(shm.name().unwrap().to_string()).unwrap();
}

#[test]
fn a_segment_left_behind_by_a_normal_exit_is_cleaned_up() {
    let _w = watchdog(60);
    let names = Queue::new().unwrap();
    Process::spawn(create_and_leave, (names.clone(),)).unwrap().join().unwrap();
    let path = Path::new("/dev/shm").join(names.get().unwrap());
    while path.exists() {
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn absurd_sizes_are_refused_clearly() {
    assert_eq!(Array::<u64>::new(usize::MAX).unwrap_err().kind(), ErrorKind::InvalidInput);
    assert_eq!(Array::<u8>::new(usize::MAX - 10).unwrap_err().kind(), ErrorKind::InvalidInput);
    assert_eq!(Queue::<u8>::with_capacity(0, usize::MAX).unwrap_err().kind(), ErrorKind::InvalidInput);
}

/// Not a test of its own: the body of the separate program that
/// `a_segment_is_attached_by_name_from_a_program_we_did_not_start` runs.
#[test]
fn attach_helper() {
    let Ok(name) = std::env::var("MP_SHM_ATTACH") else { return };
    let shm = SharedMemory::attach(&name).unwrap();
    shm.write_at(0, b"from a stranger").unwrap();
}

#[test]
fn a_segment_is_attached_by_name_from_a_program_we_did_not_start() {
    let _w = watchdog(60);
    let shm = SharedMemory::create(None, 64).unwrap();
    let name = shm.name().unwrap().to_string();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "attach_helper", "--nocapture", "--test-threads=1"])
        .env("MP_SHM_ATTACH", &name)
        .output()
        .unwrap();
    assert!(out.status.success(), "helper failed: {}", String::from_utf8_lossy(&out.stderr));
    let mut buf = [0u8; 15];
    shm.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"from a stranger");
    shm.unlink().unwrap();
}

#[test]
fn copies_of_every_length_and_offset_land_exactly() {
    let shm = SharedMemory::anonymous(8192).unwrap();
    for offset in [0usize, 1, 7, 31, 33, 64] {
        for len in [0usize, 1, 63, 64, 65, 95, 96, 97, 1000, 4097] {
            shm.write_at(0, &[0xee; 8192]).unwrap();
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + offset) as u8).collect();
            shm.write_at(offset, &data).unwrap();
            let mut all = vec![0u8; 8192];
            shm.read_at(0, &mut all).unwrap();
            assert_eq!(&all[offset..offset + len], &data[..], "offset {offset}, len {len}");
            assert!(all[..offset].iter().chain(&all[offset + len..]).all(|&b| b == 0xee), "outside {offset}+{len}");
            let mut back = vec![0u8; len];
            shm.read_at(offset, &mut back).unwrap();
            assert_eq!(back, data);
        }
    }
}

fn bump_scores(scores: ShareableList<(String, u32)>, from: usize, step: usize) {
    for i in (from..scores.len()).step_by(step) {
        let (name, score) = scores.get(i).unwrap();
        scores.set(i, (name.to_uppercase(), score + 1)).unwrap();
    }
}

#[test]
fn a_shareable_list_is_changed_in_place_by_several_processes() {
    let _w = watchdog(60);
    let names = ["ann", "bob", "cy", "dee", "eve", "flo"];
    let scores = ShareableList::new(names.iter().map(|n| (n.to_string(), 10u32))).unwrap();
    let mut workers: Vec<_> = (0..2).map(|k| Process::spawn(bump_scores, (scores.clone(), k, 2)).unwrap()).collect();
    workers.iter_mut().for_each(|w| w.join().unwrap());
    let expected: Vec<(String, u32)> = names.iter().map(|n| (n.to_uppercase(), 11)).collect();
    assert_eq!(scores.to_vec().unwrap(), expected);
    assert_eq!(scores.index(&("CY".to_string(), 11)).unwrap(), Some(2));
    assert_eq!(scores.count(&("EVE".to_string(), 11)).unwrap(), 1);
    // Bad input is refused and loses nothing.
    let long = ("a name far longer than the slot made for it".to_string(), 1);
    assert_eq!(scores.set(0, long).unwrap_err().kind(), ErrorKind::InvalidInput);
    assert_eq!(scores.get(6).unwrap_err().kind(), ErrorKind::InvalidInput);
    assert_eq!(scores.set(6, ("x".into(), 1)).unwrap_err().kind(), ErrorKind::InvalidInput);
    assert_eq!(scores.get(0).unwrap(), ("ANN".to_string(), 11));
    let handles = ShareableList::new([Value::new(1u8).unwrap()]);
    assert_eq!(handles.unwrap_err().kind(), ErrorKind::HandleOutsideTransfer);
}

fn make_block(keeper: BlockKeeper, text: Vec<u8>) -> String {
    let block = keeper.shared_memory(4096).unwrap();
    block.write_at(0, &text).unwrap();
    block.name().unwrap().to_string()
}

#[test]
fn blocks_made_through_the_manager_outlive_their_makers_until_it_shuts_down() {
    let _w = watchdog(60);
    let smm = SharedMemoryManager::start().unwrap();
    let mut paths = Vec::new();
    for k in 0..3u8 {
        let name = Process::spawn(make_block, (smm.keeper(), vec![k; 8])).unwrap().join().unwrap();
        paths.push(Path::new("/dev/shm").join(&name));
        // The maker has exited; the block is still there, with what it wrote.
        let mut got = [0u8; 8];
        SharedMemory::attach(&name).unwrap().read_at(0, &mut got).unwrap();
        assert_eq!(got, [k; 8]);
    }
    // Long enough for the cleaner to have unlinked them, were they still the makers'.
    std::thread::sleep(Duration::from_millis(300));
    assert!(paths.iter().all(|p| p.exists()));
    let ours = smm.shared_memory(16).unwrap();
    paths.push(Path::new("/dev/shm").join(ours.name().unwrap()));
    smm.shutdown().unwrap();
    assert!(paths.iter().all(|p| !p.exists()), "a block outlived the manager's shutdown");
    assert_eq!(smm.shared_memory(16).unwrap_err().kind(), ErrorKind::Disconnected);
    smm.shutdown().unwrap(); // a second shutdown does nothing
}

fn start_manager_and_wait(names: Queue<String>) {
    let smm = SharedMemoryManager::start().unwrap();
    names.put(smm.shared_memory(4096).unwrap().name().unwrap().to_string()).unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn a_killed_program_leaves_no_block_of_its_manager_behind() {
    let _w = watchdog(60);
    let names = Queue::new().unwrap();
    let mut owner = Process::spawn(start_manager_and_wait, (names.clone(),)).unwrap();
    let path = Path::new("/dev/shm").join(names.get().unwrap());
    assert!(path.exists());
    owner.kill().unwrap();
    let _ = owner.join();
    // The keeper dies with its program, and the cleaner unlinks what it kept.
    while path.exists() {
        std::thread::sleep(Duration::from_millis(10));
    }
}
