//! A throw-away ClickHouse server for tests: Debian's `clickhouse-server` (scripts/test
//! installs it) on free loopback ports, with its own folder, stopped when dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct ClickHouse {
    pub http_port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
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

impl ClickHouse {
    pub fn start() -> ClickHouse {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let (http_port, tcp_port, interserver_port) = (free_port(), free_port(), free_port());
        let path = |name: &str| root.join(name).display().to_string();
        std::fs::write(
            root.join("users.xml"),
            "<?xml version=\"1.0\"?>\n<yandex>\n<profiles><default></default></profiles>\n\
             <users><default><password></password>\
             <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>\
             <profile>default</profile><quota>default</quota></default></users>\n\
             <quotas><default></default></quotas>\n</yandex>\n",
        )
        .unwrap();
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
                 <mark_cache_size>5368709120</mark_cache_size>\n</yandex>\n",
                log = path("server.log"),
                errorlog = path("error.log"),
                data = path("data"),
                tmp = path("tmp"),
                users = path("users.xml"),
            ),
        )
        .unwrap();
        let child = Command::new(server_binary())
            .arg(format!("--config-file={}", path("config.xml")))
            .current_dir(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("clickhouse-server starts");
        let server = ClickHouse {
            http_port,
            child,
            _dir: dir,
        };
        let started = Instant::now();
        while !server.answers() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "clickhouse-server did not answer on port {http_port} within 30 s: {}",
                std::fs::read_to_string(server._dir.path().join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
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

impl Drop for ClickHouse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
