//! HTTP load benchmark (issue 16's floors), both figures measured in the
//! same run on the same machine:
//!
//! - requests/s with keep-alive of ledge answering `POST /echo` through an
//!   HTTP-triggered echo function (tests/fixtures/wat/respond_echo.wat,
//!   event in API Gateway's format 2.0, response mapped back), against a
//!   plain hyper hello-world server (the same hyper, `http1` + `server`,
//!   on a 2-worker tokio runtime): floor ledge ≥ 0.5× hyper;
//! - latency of ledge at a steady 1,000 requests/s (open loop: each
//!   request is timed from when it was due, so a stall is not hidden):
//!   floor p99 ≤ 2 ms.
//!
//! ```text
//! http_load all --ledge target/release/ledge [--secs S] [--connections N]
//! ```
//!
//! Everything listens on 127.0.0.1; ledge is started on free ports and
//! killed afterwards. stdout gets one tab-separated `result` line per figure
//! (`result <key> <value> <unit> <note>`), progress goes to stderr.

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, ExitCode, Stdio};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

const BODY: &[u8] = b"{\"value\":31.5,\"sensor\":\"t1\"}";
const STEADY_RATE: f64 = 1000.0;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`; only `all` measures.
    if args.first().map(String::as_str) != Some("all") {
        eprintln!("usage: http_load all --ledge PATH [--secs S] [--connections N]");
        return ExitCode::SUCCESS;
    }
    let option = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let Some(ledge) = option("--ledge") else {
        eprintln!("http_load all needs --ledge PATH (a release build)");
        return ExitCode::from(2);
    };
    let secs: f64 = option("--secs").and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let connections: usize = option("--connections")
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    match run(
        Path::new(&ledge),
        Duration::from_secs_f64(secs),
        connections,
    ) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("http_load: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(binary: &Path, secs: Duration, connections: usize) -> Result<(), String> {
    let baseline = hello_server()?;
    eprintln!(
        "plain hyper hello-world on {baseline}: {connections} keep-alive connections for {secs:?}"
    );
    let hyper_rps = throughput(baseline, "/", connections, secs)?;
    eprintln!("  {hyper_rps:.0} requests/s");

    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (mut ledge, address) = start_ledge(binary, dir.path())?;
    eprintln!("ledge (echo function on POST /echo) on {address}");
    let ledge_rps = throughput(address, "/echo", connections, secs);
    let latency = ledge_rps
        .as_ref()
        .map_err(String::clone)
        .and_then(|_| steady_latency(address, 4, STEADY_RATE, secs));
    let _ = ledge.kill();
    let _ = ledge.wait();
    let ledge_rps = ledge_rps?;
    let (p50, p99, max, sent) = latency?;
    eprintln!("  {ledge_rps:.0} requests/s; at {STEADY_RATE}/s: p50 {p50:.3} ms, p99 {p99:.3} ms, max {max:.3} ms ({sent} requests)");
    let ratio = ledge_rps / hyper_rps.max(1.0);
    println!("result\thttp_hyper_rps\t{hyper_rps:.0}\treq/s\tplain hyper hello-world, {connections} keep-alive connections");
    println!("result\thttp_ledge_rps\t{ledge_rps:.0}\treq/s\tledge POST /echo through wasm, {connections} keep-alive connections");
    println!("result\thttp_ratio\t{ratio:.3}\tx\tledge / hyper (floor >= 0.5)");
    println!("result\thttp_p50_ms\t{p50:.3}\tms\tledge at {STEADY_RATE}/s");
    println!("result\thttp_p99_ms\t{p99:.3}\tms\tledge at {STEADY_RATE}/s (floor <= 2)");
    println!("result\thttp_max_ms\t{max:.3}\tms\tledge at {STEADY_RATE}/s");
    Ok(())
}

/// Keep-alive clients, each sending one request after the other, for
/// `secs`: the total rate of answered requests.
fn throughput(
    address: SocketAddr,
    path: &str,
    connections: usize,
    secs: Duration,
) -> Result<f64, String> {
    let started = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let path = path.to_owned();
            std::thread::spawn(move || -> Result<u64, String> {
                let mut client = Client::connect(address)?;
                let mut done = 0;
                while started.elapsed() < secs {
                    client.post(&path)?;
                    done += 1;
                }
                Ok(done)
            })
        })
        .collect();
    let mut total = 0;
    for worker in workers {
        total += worker.join().map_err(|_| "a client thread panicked")??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// `rate` requests a second over `connections` for `secs`, each timed from
/// when it was due: p50, p99 and max in ms, and how many were sent.
fn steady_latency(
    address: SocketAddr,
    connections: usize,
    rate: f64,
    secs: Duration,
) -> Result<(f64, f64, f64, usize), String> {
    let per_connection = rate / connections as f64;
    let interval = Duration::from_secs_f64(1.0 / per_connection);
    let count = (secs.as_secs_f64() * per_connection) as usize;
    let start = Instant::now() + Duration::from_millis(50);
    let workers: Vec<_> = (0..connections)
        .map(|i| {
            std::thread::spawn(move || -> Result<Vec<f64>, String> {
                let mut client = Client::connect(address)?;
                let offset = interval.mul_f64(i as f64 / connections as f64);
                let mut latencies = Vec::with_capacity(count);
                for n in 0..count {
                    let due = start + offset + interval * n as u32;
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    client.post("/echo")?;
                    latencies.push(due.elapsed().as_secs_f64() * 1000.0);
                }
                Ok(latencies)
            })
        })
        .collect();
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.join().map_err(|_| "a client thread panicked")??);
    }
    all.sort_by(f64::total_cmp);
    let at = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    Ok((at(0.5), at(0.99), at(1.0), all.len()))
}

/// A blocking HTTP/1.1 keep-alive client: enough for `POST` and a
/// `content-length` answer.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn connect(address: SocketAddr) -> Result<Self, String> {
        let stream = TcpStream::connect(address).map_err(|e| format!("connect {address}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let writer = stream.try_clone().map_err(|e| e.to_string())?;
        Ok(Self {
            reader: BufReader::new(stream),
            writer,
        })
    }

    fn post(&mut self, path: &str) -> Result<(), String> {
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            BODY.len()
        )
        .into_bytes();
        request.extend_from_slice(BODY);
        self.writer
            .write_all(&request)
            .map_err(|e| format!("send: {e}"))?;
        let mut line = String::new();
        let mut length = 0;
        let mut status = String::new();
        loop {
            line.clear();
            let n = self
                .reader
                .read_line(&mut line)
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("the server closed the connection".into());
            }
            if status.is_empty() {
                status = line.trim().to_owned();
                continue;
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().map_err(|_| "bad content-length")?;
                }
            }
        }
        if !status.starts_with("HTTP/1.1 200") {
            return Err(format!("answer {status:?}"));
        }
        let mut body = vec![0; length];
        self.reader
            .read_exact(&mut body)
            .map_err(|e| format!("read body: {e}"))?;
        Ok(())
    }
}

/// Starts `ledge run` with an echo function on `POST /echo`; its child and
/// the HTTP address.
fn start_ledge(binary: &Path, dir: &Path) -> Result<(Child, SocketAddr), String> {
    let wat = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wat/respond_echo.wat");
    let wasm = wat::parse_file(&wat).map_err(|e| format!("{}: {e}", wat.display()))?;
    std::fs::write(dir.join("echo.wasm"), wasm).map_err(|e| e.to_string())?;
    let broker = free_port()?;
    let http = free_port()?;
    let config = format!(
        "[device]\nid = \"bench\"\ndata_dir = \"data\"\n[broker]\nlisten = \"127.0.0.1:{broker}\"\n[log]\nlevel = \"warn\"\n[http]\nlisten = \"127.0.0.1:{http}\"\n[[function]]\nname = \"echo\"\nmodule = \"echo.wasm\"\nmax_concurrency = 2\n[[trigger]]\nsource = \"http\"\nmethod = \"POST\"\npath = \"/echo\"\nfunction = \"echo\"\n"
    );
    let path = dir.join("ledge.toml");
    std::fs::write(&path, config).map_err(|e| e.to_string())?;
    let mut child = Command::new(binary)
        .args(["run", "--config"])
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let address = SocketAddr::from(([127, 0, 0, 1], http));
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(address).is_err() {
        if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
            let _ = child.kill();
            return Err(format!("ledge did not listen on {address}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((child, address))
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// The baseline: hyper's hello world on its own 2-worker runtime (as many
/// workers as the bench machine has cores), in a thread of this process.
fn hello_server() -> Result<SocketAddr, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .map_err(|e| e.to_string())?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    std::thread::spawn(move || {
        runtime.block_on(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|_request| async {
                        Ok::<_, Infallible>(hyper::Response::new(Hello(Some(
                            bytes::Bytes::from_static(b"hello"),
                        ))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo(stream), service)
                        .await;
                });
            }
        });
    });
    Ok(address)
}

/// A one-piece body.
struct Hello(Option<bytes::Bytes>);

impl hyper::body::Body for Hello {
    type Data = bytes::Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Infallible>>> {
        Poll::Ready(self.0.take().map(|b| Ok(hyper::body::Frame::data(b))))
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.0.as_ref().map_or(0, |b| b.len() as u64))
    }
}

/// hyper's IO traits over a tokio stream (hyper-util's `TokioIo`, which
/// ledge does not depend on).
struct TokioIo(tokio::net::TcpStream);

impl hyper::rt::Read for TokioIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        // SAFETY: tokio's ReadBuf only reports bytes it initialised, and
        // the cursor advances by exactly those.
        let filled = unsafe {
            let mut tokio_buf = tokio::io::ReadBuf::uninit(buf.as_mut());
            match tokio::io::AsyncRead::poll_read(Pin::new(&mut self.0), cx, &mut tokio_buf) {
                Poll::Ready(Ok(())) => tokio_buf.filled().len(),
                other => return other,
            }
        };
        unsafe { buf.advance(filled) };
        Poll::Ready(Ok(()))
    }
}

impl hyper::rt::Write for TokioIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        tokio::io::AsyncWrite::poll_write(Pin::new(&mut self.0), cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        tokio::io::AsyncWrite::poll_flush(Pin::new(&mut self.0), cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        tokio::io::AsyncWrite::poll_shutdown(Pin::new(&mut self.0), cx)
    }
}
