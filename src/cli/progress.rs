//! The progress bar of `apply` on a terminal, behind the applier's
//! [`Progress`] trait (the library never draws).

use crate::reconcile::applier::Progress;
use std::time::Duration;

/// A bar on stderr; it replaces the log line per task.
pub struct Bar(indicatif::ProgressBar);

impl Bar {
    pub fn new() -> Bar {
        let pb = indicatif::ProgressBar::with_draw_target(
            Some(0),
            indicatif::ProgressDrawTarget::stderr(),
        );
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} applying [{bar:30}] {pos}/{len} {per_sec} eta {eta}",
        ) {
            pb.set_style(style.progress_chars("=> "));
        }
        Bar(pb)
    }
}

impl Default for Bar {
    fn default() -> Self {
        Bar::new()
    }
}

impl Progress for Bar {
    fn start(&self, total: u64) {
        self.0.set_length(total);
        self.0.enable_steady_tick(Duration::from_millis(120));
    }
    fn task_done(&self) {
        self.0.inc(1);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
    fn replaces_logs(&self) -> bool {
        true
    }
}
