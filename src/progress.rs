//! Progress bars for long work, drawn on stderr (hidden automatically when stderr is not a
//! terminal, so logs and tests stay clean).

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `len` steps, labelled `message`.
pub fn bar(len: u64, message: &str) -> ProgressBar {
    let style =
        ProgressStyle::with_template("{msg:>16} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
    ProgressBar::new(len)
        .with_style(style)
        .with_message(message.to_string())
}
