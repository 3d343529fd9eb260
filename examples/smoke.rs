use multiproc::{Context, StartMethod};
fn add(a: i32, b: i32) -> i32 { a + b }
fn main() {
    for m in StartMethod::ALL {
        let ctx = Context::new(m);
        let t = std::time::Instant::now();
        let mut p = ctx.spawn(add, (2, 3)).unwrap();
        let r = p.join();
        println!("{m}: {:?} {:?} in {:?}", r, p.exit_code(), t.elapsed());
        let t = std::time::Instant::now();
        for _ in 0..20 { ctx.spawn(add, (2, 3)).unwrap().join().unwrap(); }
        println!("{m}: {:?}/spawn", t.elapsed() / 20);
    }
}
