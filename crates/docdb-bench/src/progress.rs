//! The live progress line on stderr (indicatif), or nothing with `--quiet`.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

#[derive(Debug, Clone, Copy)]
pub struct Progress {
    quiet: bool,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        Progress { quiet }
    }

    fn bar(&self, len: u64) -> ProgressBar {
        if self.quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(len)
        }
    }

    /// A bar for a timed phase; its position is elapsed milliseconds.
    pub fn timed(&self, label: &str, duration: Duration) -> ProgressBar {
        let bar = self.bar(duration.as_millis() as u64);
        bar.set_style(style("{prefix:>20} [{elapsed_precise}] {bar:30} {msg}"));
        bar.set_prefix(label.to_owned());
        bar
    }

    /// A bar counting `unit`s up to `len` (preloading, filling the WAL).
    pub fn counting(&self, label: &str, len: u64, unit: &str) -> ProgressBar {
        let bar = self.bar(len);
        bar.set_style(style(&format!(
            "{{prefix:>20}} [{{elapsed_precise}}] {{bar:30}} {{human_pos}}/{{human_len}} {unit} {{msg}}"
        )));
        bar.set_prefix(label.to_owned());
        bar
    }

    /// A spinner for a phase of unknown length (reopening a database).
    pub fn spinner(&self, label: &str) -> ProgressBar {
        let bar = if self.quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new_spinner()
        };
        bar.set_style(style("{prefix:>20} [{elapsed_precise}] {spinner} {msg}"));
        bar.set_prefix(label.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }
}
