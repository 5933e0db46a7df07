//! A small Prometheus text-format registry: no extra crate for a handful of series.

use std::collections::BTreeMap;
use std::fmt::Write as _;

const BUCKETS: [f64; 10] = [0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0];

#[derive(Debug, Default, Clone)]
pub struct Metrics {
    reconcile_counts: [u64; BUCKETS.len()],
    reconcile_sum: f64,
    reconcile_total: u64,
    steps: BTreeMap<(String, String), u64>,
    loops: u64,
    last_pass_seconds: f64,
    pub phases: BTreeMap<String, u64>,
    pub revision: Option<String>,
    pub notifications: BTreeMap<(String, String), u64>,
}

impl Metrics {
    pub fn observe_reconcile(&mut self, seconds: f64) {
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                self.reconcile_counts[i] += 1;
            }
        }
        self.reconcile_sum += seconds;
        self.reconcile_total += 1;
    }

    pub fn step(&mut self, kind: &str, outcome: &str) {
        *self
            .steps
            .entry((kind.to_owned(), outcome.to_owned()))
            .or_default() += 1;
    }

    pub fn loop_done(&mut self, took: std::time::Duration) {
        self.loops += 1;
        self.last_pass_seconds = took.as_secs_f64();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP steward_reconcile_duration_seconds Time to observe, plan and apply one client."
        );
        let _ = writeln!(out, "# TYPE steward_reconcile_duration_seconds histogram");
        for (i, bound) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "steward_reconcile_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                self.reconcile_counts[i]
            );
        }
        let _ = writeln!(
            out,
            "steward_reconcile_duration_seconds_bucket{{le=\"+Inf\"}} {}",
            self.reconcile_total
        );
        let _ = writeln!(
            out,
            "steward_reconcile_duration_seconds_sum {}",
            self.reconcile_sum
        );
        let _ = writeln!(
            out,
            "steward_reconcile_duration_seconds_count {}",
            self.reconcile_total
        );
        let _ = writeln!(out, "# HELP steward_clients Clients by phase.");
        let _ = writeln!(out, "# TYPE steward_clients gauge");
        for (phase, n) in &self.phases {
            let _ = writeln!(out, "steward_clients{{phase=\"{}\"}} {n}", escape(phase));
        }
        let _ = writeln!(
            out,
            "# HELP steward_steps_total Steps run, by kind and outcome."
        );
        let _ = writeln!(out, "# TYPE steward_steps_total counter");
        for ((kind, outcome), n) in &self.steps {
            let _ = writeln!(
                out,
                "steward_steps_total{{kind=\"{}\",outcome=\"{}\"}} {n}",
                escape(kind),
                escape(outcome)
            );
        }
        let _ = writeln!(
            out,
            "# HELP steward_vercel_requests_total Vercel API responses, by HTTP status."
        );
        let _ = writeln!(out, "# TYPE steward_vercel_requests_total counter");
        for (status, n) in crate::vercel::responses_by_status() {
            let _ = writeln!(
                out,
                "steward_vercel_requests_total{{status=\"{}\"}} {n}",
                escape(&status)
            );
        }
        let (waits, exhausted) = crate::vercel::limiter::waits();
        let _ = writeln!(
            out,
            "# HELP steward_vercel_rate_limit_waiting Clients whose Vercel calls wait on a rate-limit window now.\n# TYPE steward_vercel_rate_limit_waiting gauge\nsteward_vercel_rate_limit_waiting {}",
            crate::vercel::limiter::waiting().len()
        );
        let _ = writeln!(
            out,
            "# HELP steward_vercel_rate_limit_waits_total Vercel requests held until their rate-limit window reset.\n# TYPE steward_vercel_rate_limit_waits_total counter\nsteward_vercel_rate_limit_waits_total {waits}"
        );
        let _ = writeln!(
            out,
            "# HELP steward_vercel_rate_limit_exhausted_total Vercel calls that gave up because the window would not reset within their budget.\n# TYPE steward_vercel_rate_limit_exhausted_total counter\nsteward_vercel_rate_limit_exhausted_total {exhausted}"
        );
        let _ = writeln!(
            out,
            "# HELP steward_notifications_total Webhook notifications, by event and outcome."
        );
        let _ = writeln!(out, "# TYPE steward_notifications_total counter");
        for ((event, outcome), n) in &self.notifications {
            let _ = writeln!(
                out,
                "steward_notifications_total{{event=\"{}\",outcome=\"{}\"}} {n}",
                escape(event),
                escape(outcome)
            );
        }
        let _ = writeln!(out, "# HELP steward_loops_total Passes over the fleet.");
        let _ = writeln!(out, "# TYPE steward_loops_total counter");
        let _ = writeln!(out, "steward_loops_total {}", self.loops);
        let _ = writeln!(
            out,
            "# HELP steward_last_pass_seconds How long the last pass over the fleet took."
        );
        let _ = writeln!(out, "# TYPE steward_last_pass_seconds gauge");
        let _ = writeln!(out, "steward_last_pass_seconds {}", self.last_pass_seconds);
        let (live, cached) = crate::apply::cache::observations();
        let _ = writeln!(
            out,
            "# HELP steward_database_observations_total Client database observations, live or reused from a recent live one (--db-resync)."
        );
        let _ = writeln!(out, "# TYPE steward_database_observations_total counter");
        let _ = writeln!(
            out,
            "steward_database_observations_total{{source=\"live\"}} {live}"
        );
        let _ = writeln!(
            out,
            "steward_database_observations_total{{source=\"cached\"}} {cached}"
        );
        let _ = writeln!(
            out,
            "# HELP steward_fleet_revision The fleet revision last loaded."
        );
        let _ = writeln!(out, "# TYPE steward_fleet_revision gauge");
        let _ = writeln!(
            out,
            "steward_fleet_revision{{revision=\"{}\"}} 1",
            escape(self.revision.as_deref().unwrap_or("unknown"))
        );
        out
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line is a comment (`# HELP`/`# TYPE`) or `name{labels} value`.
    #[test]
    fn the_exposition_parses_as_prometheus_text() {
        let mut m = Metrics::default();
        m.observe_reconcile(0.3);
        m.step("migrate_up", "succeeded");
        m.phases.insert("Converged".to_owned(), 2);
        m.revision = Some("abc\"def".to_owned());
        for line in m.render().lines() {
            if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
                continue;
            }
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("no value: {line}"));
            assert!(value.parse::<f64>().is_ok(), "bad value in {line}");
            let name_end = series.find('{').unwrap_or(series.len());
            let name = &series[..name_end];
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "bad name in {line}"
            );
            if name_end < series.len() {
                assert!(series.ends_with('}'), "unclosed labels in {line}");
            }
        }
        assert!(
            m.render()
                .contains("steward_reconcile_duration_seconds_bucket{le=\"0.5\"} 1")
        );
        assert!(m.render().contains("revision=\"abc\\\"def\""));
    }
}
