//! Progress of long work on stderr: a bar (or a spinner) when stderr is a terminal, plain
//! lines otherwise, so CI logs stay readable; and sizes and durations in human units.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use indicatif::{HumanBytes, ProgressBar, ProgressStyle};

use crate::apply::{OnStep, StepEvent};
use crate::output::{Style, paint};
use crate::plan::Step;

/// A bar over `total` clients (terminal only) that step lines print above.
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    color: bool,
}

impl Progress {
    /// A bar of `total` clients, shown only when stderr is a terminal.
    pub fn clients(total: usize, what: &str, color: bool) -> Arc<Self> {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total as u64);
            if let Ok(style) = ProgressStyle::with_template(
                "{spinner} {msg} [{bar:30}] {pos}/{len} clients, {elapsed}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(what.to_owned());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Arc::new(Progress { bar, color })
    }

    /// Plain lines only (the daemon's endless passes have no end to show).
    pub fn lines(color: bool) -> Arc<Self> {
        Arc::new(Progress { bar: None, color })
    }

    /// A spinner for one long task (a backup, a restore), terminal only.
    pub fn task(what: &str, color: bool) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
                bar.set_style(style);
            }
            bar.set_message(what.to_owned());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        if bar.is_none() {
            eprintln!("{what}");
        }
        Progress { bar, color }
    }

    /// A line for the person watching: above the bar, or plain on stderr.
    pub fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }

    /// One more client done.
    pub fn advance(&self) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    /// Remove the bar; the summary follows on stdout.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    /// The step callback for a run: `shop ✓ migrate up to … (1.2 s)`.
    pub fn on_step(self: &Arc<Self>) -> OnStep {
        let progress = self.clone();
        Arc::new(move |client: &str, step: &Step, event: StepEvent| {
            if let Some(line) = step_line(progress.color, client, step, &event) {
                progress.line(&line);
            }
        })
    }
}

/// What a step event says to a person; `None` for a start (the end says it all).
pub fn step_line(color: bool, client: &str, step: &Step, event: &StepEvent) -> Option<String> {
    Some(match event {
        StepEvent::Started => return None,
        StepEvent::Succeeded(took) => format!(
            "{client:>10} {} {step} ({})",
            paint(color, "✓", Style::Green),
            duration(*took)
        ),
        StepEvent::Failed(err) => format!(
            "{client:>10} {} {step}: {err}",
            paint(color, "✗", Style::Red)
        ),
        StepEvent::Undone => format!(
            "{client:>10} {} undone: {}",
            paint(color, "↶", Style::Yellow),
            step.kind()
        ),
        // A new stage is worth a line; each look at its figures is not.
        StepEvent::Rollout(progress) if progress.error_rate.is_none() => {
            format!(
                "{client:>10} {} {progress}",
                paint(color, "→", Style::Yellow)
            )
        }
        StepEvent::Rollout(_) => return None,
    })
}

/// `340 ms`, `4.2 s`, `3 min 05 s`, `1 h 02 min`.
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    let s = d.as_secs();
    if ms < 1_000 {
        format!("{ms} ms")
    } else if s < 60 {
        format!("{:.1} s", d.as_secs_f64())
    } else if s < 3_600 {
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        format!("{} h {:02} min", s / 3_600, (s % 3_600) / 60)
    }
}

/// `196.2 MiB`.
pub fn bytes(n: u64) -> String {
    HumanBytes(n).to_string()
}

/// Collects one line per client while work runs, for the closing summary.
#[derive(Debug, Default)]
pub struct Summary {
    rows: Mutex<Vec<Vec<String>>>,
}

impl Summary {
    pub fn add(&self, client: &str, result: &str, detail: impl Into<String>) {
        self.rows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(vec![client.to_owned(), result.to_owned(), detail.into()]);
    }

    /// The table, one line per client, sorted by name.
    pub fn render(&self) -> String {
        let mut rows = self
            .rows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        rows.sort();
        crate::output::table::render(&["CLIENT", "RESULT", "DETAIL"], &rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_in_the_unit_that_fits() {
        assert_eq!(duration(Duration::from_millis(340)), "340 ms");
        assert_eq!(duration(Duration::from_millis(4_230)), "4.2 s");
        assert_eq!(duration(Duration::from_secs(185)), "3 min 05 s");
        assert_eq!(duration(Duration::from_secs(3_720)), "1 h 02 min");
    }

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(bytes(61_172_551), "58.34 MiB");
        assert_eq!(bytes(512), "512 B");
    }
}
