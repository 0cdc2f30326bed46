//! Progress bars on stderr (indicatif), hidden when stderr is not a terminal so that logs and
//! test output stay clean; the plain-text lines that matter are printed either way.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// Whether bars are drawn at all.
pub fn interactive() -> bool {
    std::io::stderr().is_terminal()
}

fn bar(len: Option<u64>, template: &str) -> ProgressBar {
    if !interactive() {
        return ProgressBar::hidden();
    }
    let bar = match len {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// A byte-transfer bar (uploads, downloads); its length is set when the total is known.
pub fn bytes(message: &str) -> ProgressBar {
    let b = bar(
        Some(0),
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
    );
    b.set_message(message.to_string());
    b
}

/// A bar over `n` items (datasets, training steps).
pub fn items(n: u64, message: &str) -> ProgressBar {
    let b = bar(
        Some(n),
        "{msg} [{bar:30}] {pos}/{len} {elapsed_precise} {eta}",
    );
    b.set_message(message.to_string());
    b
}

/// A Hub progress sink drawing into `bar`.
pub fn hub_sink(bar: ProgressBar) -> Arc<dyn hub::progress::ProgressSink> {
    Arc::new(move |_file: &str, done: u64, total: Option<u64>| {
        if let Some(total) = total {
            bar.set_length(total);
        }
        bar.set_position(done);
    })
}

/// Waits `wait`, showing a countdown with `what` (a bar on a terminal, else one line every
/// 30 seconds on stderr).
pub async fn countdown(wait: Duration, what: &str) {
    let secs = wait.as_secs();
    let b = bar(Some(secs.max(1)), "{msg} [{bar:30}] {pos}/{len} s");
    let started = tokio::time::Instant::now();
    let deadline = started + wait;
    let mut last_line: Option<u64> = None;
    loop {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            break;
        }
        let left = (deadline - now).as_secs_f64().ceil() as u64;
        b.set_message(format!("{what}: retrying in {left} s"));
        b.set_position(secs.saturating_sub(left));
        if !interactive() && last_line.is_none_or(|l: u64| l >= left + 30) {
            eprintln!("{what}: retrying in {left} s");
            last_line = Some(left);
        }
        tokio::time::sleep((deadline - now).min(Duration::from_secs(1))).await;
    }
    b.finish_and_clear();
}
