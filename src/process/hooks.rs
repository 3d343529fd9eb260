//! Registration points for the layers above: what they need done when a child starts, without
//! `process/` knowing them — in the spirit of Python's `util.register_after_fork`.
//!
//! - **Around a fork** ([`at_fork`]): `prepare` runs in the forking thread just before the fork
//!   and returns what it holds (a lock guard, so that no other thread changes that state while
//!   the child's copy is made); the new child gets it back in `child`, the parent drops its own.
//! - **Into a spawned or fork-server child** ([`export`]): at each start the parent's `export`
//!   runs, and its bytes travel in the child's bootstrap under the hook's name; in the child the
//!   layer takes them with [`take_import`] when it first needs them (a layer's code may not run
//!   at all in a given child, and needs no registration there). Bytes a child never took are
//!   passed on to its own children as they were.
//!
//! The manager registers both (its connections must not be shared with a forked child, and a
//! child must know the managers its parent knew); the arrows go from the manager to here only.

use std::any::Any;
use std::sync::Mutex;

/// What a layer holds across a fork.
pub(crate) type Held = Box<dyn Any>;

#[derive(Clone, Copy)]
struct AtFork {
    name: &'static str,
    prepare: fn() -> Held,
    child: fn(Held),
}

#[derive(Clone, Copy)]
struct Export {
    name: &'static str,
    export: fn() -> Vec<u8>,
}

static AT_FORK: Mutex<Vec<AtFork>> = Mutex::new(Vec::new());
static EXPORTS: Mutex<Vec<Export>> = Mutex::new(Vec::new());
/// What this process's parent exported to it, by hook name, until taken.
static IMPORTS: Mutex<Vec<(String, Vec<u8>)>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Registers (once per `name`) what to do around every fork this process makes.
pub(crate) fn at_fork(name: &'static str, prepare: fn() -> Held, child: fn(Held)) {
    let mut hooks = lock(&AT_FORK);
    if !hooks.iter().any(|h| h.name == name) {
        hooks.push(AtFork { name, prepare, child });
    }
}

/// Registers (once per `name`) what to hand every spawned or fork-server child.
pub(crate) fn export(name: &'static str, export: fn() -> Vec<u8>) {
    let mut hooks = lock(&EXPORTS);
    if !hooks.iter().any(|h| h.name == name) {
        hooks.push(Export { name, export });
    }
}

/// In a child: what the parent's `name` hook exported, once (`None` if nothing came).
pub(crate) fn take_import(name: &str) -> Option<Vec<u8>> {
    let mut imports = lock(&IMPORTS);
    let at = imports.iter().position(|(n, _)| n == name)?;
    Some(imports.swap_remove(at).1)
}

/// (The fork path.) Runs every `prepare`, in the order registered; the result goes to
/// [`Prepared::in_child`] in the child and is dropped in the parent.
pub(crate) fn prepare_fork() -> Prepared {
    let hooks: Vec<AtFork> = lock(&AT_FORK).clone();
    Prepared(hooks.iter().map(|h| (h.child, (h.prepare)())).collect())
}

/// What the layers hold across one fork.
pub(crate) struct Prepared(Vec<(fn(Held), Held)>);

impl Prepared {
    /// In the new child: hands each layer back what it held.
    pub(crate) fn in_child(self) {
        for (child, held) in self.0 {
            child(held);
        }
    }
}

/// (The start path.) What every hook exports now, and what this process was given and did not
/// take, by name.
pub(crate) fn exports() -> Vec<(String, Vec<u8>)> {
    let hooks: Vec<Export> = lock(&EXPORTS).clone();
    let mut out: Vec<(String, Vec<u8>)> = hooks.iter().map(|h| (h.name.to_owned(), (h.export)())).collect();
    for (name, bytes) in lock(&IMPORTS).iter() {
        if !out.iter().any(|(n, _)| n == name) {
            out.push((name.clone(), bytes.clone()));
        }
    }
    out
}

/// (A child's start.) Keeps what the parent exported, for [`take_import`].
pub(crate) fn set_imports(imports: Vec<(String, Vec<u8>)>) {
    *lock(&IMPORTS) = imports;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_are_taken_once_and_passed_on_until_then() {
        set_imports(vec![("test-hook".into(), vec![1, 2, 3])]);
        assert!(exports().iter().any(|(n, b)| n == "test-hook" && b == &[1, 2, 3]));
        assert_eq!(take_import("test-hook"), Some(vec![1, 2, 3]));
        assert_eq!(take_import("test-hook"), None);
        assert!(!exports().iter().any(|(n, _)| n == "test-hook"));
    }
}
