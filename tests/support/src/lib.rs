//! What logproxy's integration tests and its load bench both need: a free port, the
//! `/metrics` text reader, and queries counted at ClickHouse's own `system.query_log`.

/// A free loopback port (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The value of an unlabelled metric (or a full `name{labels}` series) in `/metrics` text,
/// if the series is there.
pub fn metric(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .map(|v| v.trim().parse().unwrap())
}

/// The value of a series that must be in the `/metrics` text.
pub fn metric_value(metrics: &str, series: &str) -> f64 {
    metric(metrics, series).unwrap_or_else(|| panic!("{series} missing from /metrics"))
}

/// Waits until everything that ran on `ch`'s server before this call is in its
/// `system.query_log`: a marker query of the caller's own runs, then the log is flushed
/// until the marker's row is there. The log keeps its rows in the order they were queued, so
/// once the marker is in, so is every query that started or ended before it. (A count read
/// right after `SYSTEM FLUSH LOGS` alone can miss queries that just ran: on 18.16 the flush
/// does not wait for the thread that writes the log, and a clean CI run read 0 for a query
/// whose rows had just answered 48 requests.) `ch` is a client set up as the service sets up
/// its own (`ChClient::raw`): row validation off, which ClickHouse 18.16 needs.
pub async fn settle_query_log(ch: &clickhouse::Client) {
    static MARKERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = MARKERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let marker = format!(
        "lp-marker-{}-{n}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    );
    ch.query("SELECT 1")
        .with_setting("query_id", marker.as_str())
        .fetch_one::<u8>()
        .await
        .expect("the marker query");
    for _ in 0..200 {
        ch.query("SYSTEM FLUSH LOGS")
            .execute()
            .await
            .expect("flush logs");
        let seen = ch
            .query("SELECT count() FROM system.query_log WHERE query_id = ? AND type = 2")
            .bind(marker.as_str())
            .fetch_one::<u64>()
            .await
            .expect("look for the marker");
        if seen > 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the marker query {marker} never reached system.query_log");
}

/// Distinct queries on `ch`'s server that a query id starting with `prefix` started: by
/// `initial_query_id`, so that a sub-query a Distributed table sent there under a new id of
/// its own counts for the query that sent it. Read once the log has settled
/// (`settle_query_log`), so it cannot be a stale zero.
pub async fn count_queries(ch: &clickhouse::Client, prefix: &str) -> u64 {
    settle_query_log(ch).await;
    ch.query("SELECT uniqExact(initial_query_id) FROM system.query_log WHERE startsWith(initial_query_id, ?)")
        .bind(prefix)
        .fetch_one::<u64>()
        .await
        .expect("count queries")
}

/// How the queries of `prefix` (by `initial_query_id`) ended on `ch`'s server, once the log
/// has settled: `(finished, failed)`, failed counting exceptions, kills included.
pub async fn query_outcomes(ch: &clickhouse::Client, prefix: &str) -> (u64, u64) {
    settle_query_log(ch).await;
    ch.query(
        "SELECT countIf(type = 2), countIf(type IN (3, 4)) FROM system.query_log \
         WHERE startsWith(initial_query_id, ?)",
    )
    .bind(prefix)
    .fetch_one::<(u64, u64)>()
    .await
    .expect("read query outcomes")
}

/// Waits until something listens on `127.0.0.1:port` (a child process just started),
/// panicking after 10 s with `what` in the message.
pub fn wait_until_listening(port: u16, what: &str) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < until,
            "{what} did not listen on port {port}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// CPU seconds (user + system, all threads) process `pid` has used, from `/proc/PID/stat`
/// (clock ticks of 1/100 s, as on Linux).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start at field 3.
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / 100.0
}

/// Resident bytes of process `pid` (`VmRSS` in `/proc/PID/status`).
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib * 1024
}

/// `len` characters of letters and digits, nearly 6 bits of entropy each (the compressors
/// keep about three quarters of them): log text that compresses badly, as some real logs do.
/// The same `seed` gives the same text.
pub fn high_entropy_text(len: usize, seed: u64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    // splitmix64: enough for text no compressor should find patterns in.
    let mut state = seed;
    (0..len)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            ALPHABET[((z ^ (z >> 31)) % ALPHABET.len() as u64) as usize] as char
        })
        .collect()
}

/// A `redis-server` of the caller's own (Debian's package), on a loopback port with no
/// persistence, stopped when dropped. `stop` and `start` again keep the port.
pub struct RedisServer {
    port: u16,
    child: Option<std::process::Child>,
}

impl RedisServer {
    pub fn started() -> Self {
        let mut server = Self {
            port: free_port(),
            child: None,
        };
        server.start();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("redis-server running").id()
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "redis-server already running");
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--loglevel", "warning"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test.sh installs redis-server)");
        self.child = Some(child);
        wait_until_listening(self.port, "redis-server");
    }

    /// Sends `signal` (`STOP`: a Redis that takes connections and never answers; `CONT`).
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal}");
    }

    /// Kills the server: its state is gone, as after a crash.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Debian's nginx of the caller's own: one process (`master_process off`), its files in a
/// temporary folder, stopped and the folder removed when dropped.
pub struct NginxServer {
    child: std::process::Child,
    dir: std::path::PathBuf,
}

impl NginxServer {
    /// Starts nginx with `http` as the body of its `http { }` block (`{dir}` in it stands
    /// for nginx's folder) and returns once it listens on every one of `ports`.
    pub fn start(http: &str, ports: &[u16]) -> Self {
        let dir = std::env::temp_dir().join(format!("logproxy-nginx-{}", free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.display().to_string();
        let main = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log;\nevents {{ worker_connections 4096; }}\n\
             http {{\n    access_log off;\n{}\n}}\n",
            http.replace("{dir}", &d)
        );
        std::fs::write(dir.join("nginx.conf"), main).unwrap();
        let nginx = ["/usr/sbin/nginx", "nginx"]
            .into_iter()
            .find(|n| std::process::Command::new(n).arg("-v").output().is_ok())
            .expect("nginx is installed (scripts/test.sh installs nginx-light)");
        let child = std::process::Command::new(nginx)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start nginx");
        let server = Self { child, dir };
        for port in ports {
            wait_until_listening(*port, "nginx");
        }
        server
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for NginxServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The shipped front `deploy/nginx/<file>` listening on `127.0.0.1:<port>`, in front of
/// `upstreams` (`host:port` each) in place of its placeholders 127.0.0.1:8081, :8082, ...
pub fn nginx_front(file: &str, port: u16, upstreams: &[&str]) -> String {
    let path = format!("{}/../../deploy/nginx/{file}", env!("CARGO_MANIFEST_DIR"));
    let mut conf = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    for (i, upstream) in upstreams.iter().enumerate() {
        let placeholder = format!("server 127.0.0.1:{} ", 8081 + i);
        assert!(conf.contains(&placeholder), "{placeholder:?} in {file}");
        conf = conf.replacen(&placeholder, &format!("server {upstream} "), 1);
    }
    let listen = conf.find("listen 127.0.0.1:").expect("a listen line");
    let end = listen + conf[listen..].find(';').unwrap();
    conf.replace_range(listen..end, &format!("listen 127.0.0.1:{port}"));
    conf
}
