//! The logging flags of the Python bittensor tools (`--logging.info`, `--logging.debug`,
//! `--logging.trace`) and `--log-format text|json`, shared by `coordinator` and `miner-cli`, and
//! the `tracing` subscriber they describe (logs go to stderr).

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, target, fields), for log collectors.
    Json,
}

/// The logging flags. A `--logging.*` flag sets the level of every crate; without one,
/// `RUST_LOG` applies, else the binary's default level.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LogArgs {
    /// Log at info level (bittensor's `--logging.info`).
    #[arg(long = "logging.info", global = true)]
    pub info: bool,
    /// Log at debug level (bittensor's `--logging.debug`).
    #[arg(long = "logging.debug", global = true)]
    pub debug: bool,
    /// Log at trace level (bittensor's `--logging.trace`).
    #[arg(long = "logging.trace", global = true)]
    pub trace: bool,
    /// `text` or `json` (one JSON object per line, for log collectors).
    #[arg(
        long = "log-format",
        alias = "log_format",
        global = true,
        value_enum,
        default_value_t = LogFormat::Text
    )]
    pub format: LogFormat,
}

impl LogArgs {
    /// The level a `--logging.*` flag asks for (the most verbose one given), if any.
    pub fn level(&self) -> Option<&'static str> {
        if self.trace {
            Some("trace")
        } else if self.debug {
            Some("debug")
        } else if self.info {
            Some("info")
        } else {
            None
        }
    }

    /// The filter: the flag's level, else `RUST_LOG`, else `default_level`.
    pub fn filter(&self, default_level: &str) -> EnvFilter {
        match self.level() {
            Some(level) => EnvFilter::new(level),
            None => {
                EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level))
            }
        }
    }

    /// Installs the process's `tracing` subscriber (stderr, text or JSON lines).
    pub fn init(&self, default_level: &str) {
        let builder = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(self.filter(default_level));
        match self.format {
            LogFormat::Text => builder.init(),
            LogFormat::Json => builder.json().init(),
        }
    }
}
