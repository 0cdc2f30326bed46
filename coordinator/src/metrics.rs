//! Counters for operators and a minimal Prometheus text endpoint (off unless
//! `coordinator.metrics_listen` is set).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

/// Serves `GET /metrics` on `listen` until the process ends.
pub async fn serve(listen: std::net::SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(%listen, "metrics endpoint up");
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                continue;
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let mut request = [0u8; 1024];
                let n = tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    socket.read(&mut request),
                )
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
            });
        }
    });
    Ok(())
}
