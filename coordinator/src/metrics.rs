//! Counters for operators and a minimal Prometheus text endpoint (off unless
//! `coordinator.metrics_listen` is set).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::worker_actor::JobOutcome;
use protocol::scoring::EpochReport;

/// What the validator exposes.
#[derive(Debug, Default)]
pub struct Metrics {
    /// The current epoch.
    pub epoch: AtomicU64,
    /// Jobs that trained and evaluated.
    pub jobs_done: AtomicU64,
    /// Jobs that failed or timed out.
    pub jobs_failed: AtomicU64,
    /// The latest eval loss per uid.
    losses: Mutex<BTreeMap<u16, f64>>,
    /// The latest u16 weight per uid.
    weights: Mutex<BTreeMap<u16, u16>>,
}

impl Metrics {
    /// Counts one job's outcome.
    pub fn record_outcome(&self, uid: u16, outcome: &JobOutcome) {
        match outcome {
            JobOutcome::Done(report) => {
                self.jobs_done.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut l) = self.losses.lock() {
                    l.insert(uid, report.eval_loss);
                }
            }
            _ => {
                self.jobs_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Takes the losses and weights of a finished epoch.
    pub fn record_report(&self, report: &EpochReport) {
        if let (Ok(mut l), Ok(mut w)) = (self.losses.lock(), self.weights.lock()) {
            for m in &report.miners {
                if let Some(loss) = m.eval_loss {
                    l.insert(m.uid, loss);
                }
                w.insert(m.uid, m.weight_u16);
            }
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# TYPE murmuration_epoch gauge\nmurmuration_epoch {}",
            self.epoch.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# TYPE murmuration_jobs_done_total counter\nmurmuration_jobs_done_total {}",
            self.jobs_done.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# TYPE murmuration_jobs_failed_total counter\nmurmuration_jobs_failed_total {}",
            self.jobs_failed.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# TYPE murmuration_eval_loss gauge");
        if let Ok(l) = self.losses.lock() {
            for (uid, loss) in l.iter() {
                let _ = writeln!(out, "murmuration_eval_loss{{uid=\"{uid}\"}} {loss}");
            }
        }
        let _ = writeln!(out, "# TYPE murmuration_weight gauge");
        if let Ok(w) = self.weights.lock() {
            for (uid, weight) in w.iter() {
                let _ = writeln!(out, "murmuration_weight{{uid=\"{uid}\"}} {weight}");
            }
        }
        out
    }
}

/// How long the endpoint waits after a failed accept (out of file descriptors, say) before it
/// tries again, times the failures in a row up to ten: a failing accept never spins a core.
pub const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

/// Where connections come from: a TCP listener, or a stand-in in tests.
pub trait Acceptor: Send + 'static {
    /// The next connection.
    fn next(&mut self) -> impl std::future::Future<Output = std::io::Result<TcpStream>> + Send;
}

impl Acceptor for TcpListener {
    async fn next(&mut self) -> std::io::Result<TcpStream> {
        self.accept().await.map(|(socket, _)| socket)
    }
}

/// Serves `GET /metrics` on `listen` until the process ends.
pub async fn serve(listen: std::net::SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    tracing::info!(%listen, "metrics endpoint up");
    tokio::spawn(accept_loop(listener, metrics));
    Ok(())
}

/// Answers each connection `acceptor` yields, backing off after failed accepts.
pub async fn accept_loop(mut acceptor: impl Acceptor, metrics: Arc<Metrics>) {
    let mut failures = 0u32;
    loop {
        match acceptor.next().await {
            Ok(socket) => {
                failures = 0;
                tokio::spawn(respond(socket, metrics.clone()));
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                if failures == 1 {
                    tracing::warn!(error = %e, "metrics endpoint: accept failed; backing off");
                }
                tokio::time::sleep(ACCEPT_BACKOFF * failures.min(10)).await;
            }
        }
    }
}

/// Answers one request: the metrics for `GET /metrics`, 404 otherwise.
async fn respond(mut socket: TcpStream, metrics: Arc<Metrics>) {
    let mut request = [0u8; 1024];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), socket.read(&mut request))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(0);
    let ok = request[..n].starts_with(b"GET /metrics");
    let (status, body) = if ok {
        ("200 OK", metrics.render())
    } else {
        ("404 Not Found", "only GET /metrics\n".to_string())
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = socket.write_all(response.as_bytes()).await;
}

#[cfg(test)]
mod accept_tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// An acceptor whose every accept fails at once, counting the tries.
    struct Failing(Arc<AtomicUsize>);

    impl Acceptor for Failing {
        async fn next(&mut self) -> std::io::Result<TcpStream> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Err(std::io::Error::other("too many open files"))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_accept_backs_off_instead_of_spinning() {
        let tries = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(accept_loop(
            Failing(tries.clone()),
            Arc::new(Metrics::default()),
        ));
        std::thread::sleep(std::time::Duration::from_millis(700));
        let n = tries.load(Ordering::Relaxed);
        task.abort();
        // 100 + 200 + 300 ms of backoff fit in 700 ms: four tries, not millions.
        assert!((1..=5).contains(&n), "{n} accepts in 700 ms");
    }

    #[tokio::test]
    async fn the_endpoint_answers_over_tcp() {
        let metrics = Arc::new(Metrics::default());
        metrics.epoch.store(7, Ordering::Relaxed);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(accept_loop(listener, metrics));
        let mut socket = TcpStream::connect(addr).await.expect("connect");
        socket
            .write_all(b"GET /metrics HTTP/1.1\r\n\r\n")
            .await
            .expect("write");
        let mut answer = String::new();
        socket.read_to_string(&mut answer).await.expect("read");
        task.abort();
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    }
}
