//! Throw-away ClickHouse servers for tests: Debian's `clickhouse-server` (`scripts/test`
//! installs it) on free loopback ports, each with its own folder, killed when dropped. Several
//! started together form a cluster, one shard each.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A user of every test server besides `default`, with the password [`PASSWORD`].
pub const USER: &str = "spanflow";
pub const PASSWORD: &str = "secret";

/// The cluster name [`TestServer::cluster`] servers know each other by.
pub const CLUSTER: &str = "spanflow_test";

pub struct TestServer {
    pub http_port: u16,
    pub tcp_port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("a free loopback port")
        .local_addr()
        .expect("a bound socket has an address")
        .port()
}

fn server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SPANFLOW_CLICKHOUSE_SERVER") {
        return path.into();
    }
    for candidate in ["/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"] {
        if Path::new(candidate).exists() {
            return candidate.into();
        }
    }
    panic!(
        "clickhouse-server not found: scripts/test installs Debian's clickhouse-server, or set \
         SPANFLOW_CLICKHOUSE_SERVER to its path"
    );
}

const USERS: &str = "<?xml version=\"1.0\"?>\n<yandex>\n<profiles><default></default></profiles>\n\
    <users><default><password></password>\
    <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>\
    <profile>default</profile><quota>default</quota></default>\
    <spanflow><password>secret</password>\
    <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>\
    <profile>default</profile><quota>default</quota></spanflow></users>\n\
    <quotas><default></default></quotas>\n</yandex>\n";

impl TestServer {
    /// One server, on its own.
    pub fn start() -> TestServer {
        TestServer::start_all(1, false).pop().expect("one server")
    }

    /// `shards` servers forming the cluster [`CLUSTER`], one shard each.
    pub fn cluster(shards: usize) -> Vec<TestServer> {
        TestServer::start_all(shards, true)
    }

    /// Configures and starts `n` servers. A free port can be taken by another process between
    /// choosing it and the server binding it (tests start servers in parallel); then the
    /// server exits, and all of them start again on new ports.
    fn start_all(n: usize, cluster: bool) -> Vec<TestServer> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut servers = TestServer::configure(n, cluster);
            let mut failure = None;
            for server in &mut servers {
                if let Err(error) = server.try_run() {
                    failure = Some(error);
                    break;
                }
            }
            match failure {
                None => return servers,
                Some(error) if error.contains("Address already in use") && attempt < 5 => continue,
                Some(error) => panic!("clickhouse-server did not start: {error}"),
            }
        }
    }

    fn configure(n: usize, cluster: bool) -> Vec<TestServer> {
        let servers: Vec<TestServer> = (0..n)
            .map(|_| TestServer {
                http_port: free_port(),
                tcp_port: free_port(),
                dir: tempfile::tempdir().expect("a temporary folder"),
                child: None,
            })
            .collect();
        let remote_servers = if cluster {
            let shards: String = servers
                .iter()
                .map(|server| {
                    format!(
                        "<shard><replica><host>127.0.0.1</host><port>{}</port></replica></shard>",
                        server.tcp_port
                    )
                })
                .collect();
            format!("<remote_servers><{CLUSTER}>{shards}</{CLUSTER}></remote_servers>\n")
        } else {
            String::new()
        };
        for server in &servers {
            let root = server.dir.path();
            let path = |name: &str| root.join(name).display().to_string();
            std::fs::write(root.join("users.xml"), USERS).expect("writing users.xml");
            std::fs::write(
                root.join("config.xml"),
                format!(
                    "<?xml version=\"1.0\"?>\n<yandex>\n\
                     <logger><level>warning</level><log>{log}</log><errorlog>{errorlog}</errorlog></logger>\n\
                     <http_port>{http_port}</http_port>\n<tcp_port>{tcp_port}</tcp_port>\n\
                     <interserver_http_port>{interserver_port}</interserver_http_port>\n\
                     <listen_host>127.0.0.1</listen_host>\n\
                     <path>{data}/</path>\n<tmp_path>{tmp}/</tmp_path>\n\
                     <users_config>{users}</users_config>\n\
                     <default_profile>default</default_profile>\n\
                     <default_database>default</default_database>\n\
                     <mark_cache_size>536870912</mark_cache_size>\n{remote_servers}</yandex>\n",
                    log = path("server.log"),
                    errorlog = path("error.log"),
                    http_port = server.http_port,
                    tcp_port = server.tcp_port,
                    interserver_port = free_port(),
                    data = path("data"),
                    tmp = path("tmp"),
                    users = path("users.xml"),
                ),
            )
            .expect("writing config.xml");
        }
        servers
    }

    fn run(&mut self) {
        if let Err(error) = self.try_run() {
            panic!("clickhouse-server did not start: {error}");
        }
    }

    /// Starts the server and waits until it answers; the error log if it exits first.
    fn try_run(&mut self) -> Result<(), String> {
        let root = self.dir.path();
        let child = Command::new(server_binary())
            .arg(format!(
                "--config-file={}",
                root.join("config.xml").display()
            ))
            .current_dir(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("clickhouse-server starts");
        self.child = Some(child);
        let started = Instant::now();
        while !self.answers() {
            let exited = self
                .child
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.child = None;
                return Err(format!(
                    "it exited ({status}): {}",
                    std::fs::read_to_string(root.join("error.log")).unwrap_or_default()
                ));
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "clickhouse-server did not answer on port {} within 30 s: {}",
                self.http_port,
                std::fs::read_to_string(root.join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// Kills the server (SIGKILL: no clean shutdown).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the killed server again, on the same ports with the same data.
    pub fn restart(&mut self) {
        self.kill();
        self.run();
    }

    fn answers(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.http_port)) else {
            return false;
        };
        let request = "GET /?query=SELECT%201 HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}
