//! A `redis-server` of each test's own, on a Unix socket in a temporary directory, stopped by
//! its pid; and cluster nodes (processes of the test binary itself, which become node agents
//! before the test harness runs).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` of our own.
pub struct Server {
    pub child: Child,
    pub dir: PathBuf,
    args: Vec<String>,
}

impl Server {
    /// Starts one with these extra arguments; `None` (after one loud line) if the binary is
    /// missing outside CI.
    pub fn start(extra: &[&str]) -> Option<Server> {
        let dir = std::env::temp_dir().join(format!(
            "multiproc-redis-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let args: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
        let child = match Server::launch(&dir, &args) {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "redis-server is not installed, and CI=true: scripts/test installs it"
                );
                eprintln!("SKIPPED: redis-server is not installed (scripts/test installs it)");
                let _ = std::fs::remove_dir_all(&dir);
                return None;
            }
            Err(e) => panic!("starting redis-server: {e}"),
        };
        let server = Server { child, dir, args };
        server.wait_ready();
        Some(server)
    }

    fn launch(dir: &std::path::Path, extra: &[String]) -> std::io::Result<Child> {
        Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(dir.join("redis.sock"))
            .args(["--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--dir"])
            .arg(dir)
            .args(extra)
            .stdout(Stdio::null())
            .spawn()
    }

    /// Waits until the server answers.
    fn wait_ready(&self) {
        let began = Instant::now();
        loop {
            let ready = redis::Client::open(self.url())
                .and_then(|c| c.get_connection())
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            match ready {
                Ok(_) => return,
                // It answers, if only to refuse us (a password is needed).
                Err(e) if !e.is_io_error() && !e.is_connection_refusal() && !e.is_connection_dropped() => return,
                Err(_) => {}
            }
            assert!(began.elapsed() < Duration::from_secs(20), "redis-server did not come up");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILLs the server (by its pid), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(self.socket());
    }

    /// Starts it again in the same directory with the same arguments (so with AOF, with the
    /// same data).
    pub fn restart(&mut self) {
        self.child = Server::launch(&self.dir, &self.args).expect("restarting redis-server");
        self.wait_ready();
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("redis.sock")
    }

    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket().display())
    }

    pub fn url_with_password(&self, password: &str) -> String {
        format!("redis+unix://{}?pass={password}", self.socket().display())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A cluster node: a process of this test binary started with `MULTIPROC_NODE`, which makes it
/// a node agent before the test harness runs. Killed (by pid) and reaped when dropped.
pub struct Node {
    pub child: Child,
    /// Where its standard error goes.
    log: PathBuf,
}

impl Node {
    pub fn start(url: &str, namespace: &str, name: &str, processes: usize) -> Node {
        Node::start_with(url, namespace, name, processes, &[])
    }

    pub fn start_with(url: &str, namespace: &str, name: &str, processes: usize, env: &[(&str, &str)]) -> Node {
        Node::start_exe(&std::env::current_exe().unwrap(), url, namespace, name, processes, env)
    }

    /// A node of the program at `exe` (another build, say).
    pub fn start_exe(
        exe: &std::path::Path,
        url: &str,
        namespace: &str,
        name: &str,
        processes: usize,
        env: &[(&str, &str)],
    ) -> Node {
        let log = std::env::temp_dir().join(format!(
            "multiproc-node-{}-{name}-{}.log",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        ));
        let child = Command::new(exe)
            .env("MULTIPROC_NODE", url)
            .env("MULTIPROC_NAMESPACE", namespace)
            .env("MULTIPROC_NODE_NAME", name)
            .env("MULTIPROC_NODE_PROCESSES", processes.to_string())
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting a node");
        Node { child, log }
    }

    /// Waits for the node to exit (within `limit`) and returns its exit code and what it
    /// wrote on its standard error.
    pub fn exit(mut self, limit: Duration) -> (Option<i32>, String) {
        let began = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code(), std::fs::read_to_string(&self.log).unwrap_or_default());
            }
            assert!(began.elapsed() < limit, "the node did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: a plain kill(2) of our own child, which we have not reaped.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}
