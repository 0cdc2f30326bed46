//! Byte progress for downloads and uploads, so the CLIs can draw progress bars (this crate draws
//! nothing itself).

/// Receives progress: `file` (its path in the repo), bytes `done` so far and the `total` when
/// known. Called often; keep it cheap. Any `Fn(&str, u64, Option<u64>)` closure is one.
pub trait ProgressSink: Send + Sync {
    /// `done` of `total` bytes of `file` have been transferred.
    fn progress(&self, file: &str, done: u64, total: Option<u64>);
}

impl<F: Fn(&str, u64, Option<u64>) + Send + Sync> ProgressSink for F {
    fn progress(&self, file: &str, done: u64, total: Option<u64>) {
        self(file, done, total)
    }
}

/// Adapts a [`ProgressSink`] to hf-hub's progress events.
pub(crate) struct HfProgress(pub std::sync::Arc<dyn ProgressSink>);

impl hf_hub::progress::ProgressHandler for HfProgress {
    fn on_progress(&self, event: &hf_hub::progress::ProgressEvent) {
        use hf_hub::progress::{DownloadEvent, ProgressEvent, UploadEvent};
        match event {
            ProgressEvent::Download(DownloadEvent::Progress { files }) => {
                for f in files {
                    self.0
                        .progress(&f.filename, f.bytes_completed, Some(f.total_bytes));
                }
            }
            ProgressEvent::Upload(UploadEvent::Progress {
                bytes_completed,
                total_bytes,
                ..
            }) => self
                .0
                .progress("(upload)", *bytes_completed, Some(*total_bytes)),
            _ => {}
        }
    }
}
