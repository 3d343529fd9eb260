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
    /// The network namespace it runs in, if not ours.
    netns: Option<String>,
}

impl Server {
    /// Starts one with these extra arguments; `None` (after one loud line) if the binary is
    /// missing outside CI.
    pub fn start(extra: &[&str]) -> Option<Server> {
        Server::start_in(None, extra)
    }

    /// As [`start`](Self::start), inside network namespace `netns` (its Unix socket is still
    /// reachable from here: it is a file).
    pub fn start_in(netns: Option<&str>, extra: &[&str]) -> Option<Server> {
        let netns = netns.map(str::to_owned);
        let dir = std::env::temp_dir().join(format!(
            "multiproc-redis-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let args: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
        let child = match Server::launch(netns.as_deref(), &dir, &args) {
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
        let server = Server { child, dir, args, netns };
        server.wait_ready();
        Some(server)
    }

    fn launch(netns: Option<&str>, dir: &std::path::Path, extra: &[String]) -> std::io::Result<Child> {
        let mut command = match netns {
            Some(netns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", netns, "redis-server"]);
                c
            }
            None => Command::new("redis-server"),
        };
        command
            .args(["--port", "0", "--unixsocket"])
            .arg(dir.join("redis.sock"))
            .args(["--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--dir"])
            .arg(dir)
            .args(extra)
            .stdout(Stdio::null())
            .die_with_test()
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
        self.child = Server::launch(self.netns.as_deref(), &self.dir, &self.args).expect("restarting redis-server");
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

    /// A node inside network namespace `netns`.
    pub fn start_in(netns: &str, url: &str, namespace: &str, name: &str, processes: usize) -> Node {
        Node::start_command(
            {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", netns]).arg(std::env::current_exe().unwrap());
                c
            },
            url,
            namespace,
            name,
            processes,
            &[],
        )
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
        Node::start_command(Command::new(exe), url, namespace, name, processes, env)
    }

    fn start_command(
        mut command: Command,
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
        let child = command
            .env("MULTIPROC_NODE", url)
            .env("MULTIPROC_NAMESPACE", namespace)
            .env("MULTIPROC_NODE_NAME", name)
            .env("MULTIPROC_NODE_PROCESSES", processes.to_string())
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .die_with_test()
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

/// Children that die with the test (say, when its watchdog aborts it before any destructor
/// could stop them).
trait DieWithTest {
    fn die_with_test(&mut self) -> &mut Self;
}

impl DieWithTest for Command {
    fn die_with_test(&mut self) -> &mut Self {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe, and the closure touches nothing else.
        unsafe {
            self.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            })
        }
    }
}

/// A pair of network namespaces joined by a veth pair, with addresses inside the namespaces
/// only: `server` (10.201.N.1) and `node` (10.201.N.2). Deleted when dropped.
pub struct Link {
    pub server: String,
    pub node: String,
    pub server_address: String,
}

impl Link {
    /// `None` (after one loud line) where this machine does not let us make namespaces.
    pub fn make() -> Option<Link> {
        let tag = std::process::id() % 100_000;
        let (server, node) = (format!("mps{tag}"), format!("mpn{tag}"));
        let net = tag % 250;
        let link = Link { server: server.clone(), node: node.clone(), server_address: format!("10.201.{net}.1") };
        let steps: [&[&str]; 10] = [
            &["netns", "add", &server],
            &["netns", "add", &node],
            &["-n", &server, "link", "add", "vs", "type", "veth", "peer", "name", "vn", "netns", &node],
            &["-n", &server, "addr", "add", &format!("10.201.{net}.1/30"), "dev", "vs"],
            &["-n", &node, "addr", "add", &format!("10.201.{net}.2/30"), "dev", "vn"],
            &["-n", &server, "link", "set", "vs", "up"],
            &["-n", &node, "link", "set", "vn", "up"],
            &["-n", &server, "link", "set", "lo", "up"],
            &["-n", &node, "link", "set", "lo", "up"],
            &["-n", &node, "link", "show", "vn"],
        ];
        for step in steps {
            let ok = Command::new("ip")
                .args(step)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                eprintln!(
                    "SKIPPED: this machine does not let the test make network namespaces (ip {})",
                    step.join(" ")
                );
                return None;
            }
        }
        Some(link)
    }

    /// Cuts (`false`) or restores (`true`) the node's side of the link.
    pub fn set_up(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        let ok = Command::new("ip").args(["-n", &self.node, "link", "set", "vn", state]).status().unwrap().success();
        assert!(ok, "setting the link {state}");
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        for netns in [&self.server, &self.node] {
            let _ = Command::new("ip").args(["netns", "del", netns]).stderr(Stdio::null()).status();
        }
    }
}
