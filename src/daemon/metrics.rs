//! The daemon's Prometheus metrics: a `prometheus-client` registry that the daemon owns
//! and hands down (to the Vercel client, the schema cache, the notifier), never a
//! process-global. Every series is an atomic, so recording never waits on a lock and
//! never drops a sample.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::apply::cache::ObservationCounters;

/// The reconcile-time buckets, in seconds: a converged client takes well under a second,
/// a full release with a bake many minutes.
const BUCKETS: [f64; 10] = [0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0];

/// The content type of [`Metrics::render`] (OpenMetrics text, which Prometheus reads).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    kind: String,
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotificationLabels {
    event: String,
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClientLabel {
    client: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RevisionLabel {
    revision: String,
}

/// Every series the daemon exports. Cloning shares the series (they are `Arc`s).
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    reconcile: Histogram,
    phases: Family<PhaseLabel, Gauge>,
    steps: Family<StepLabels, Counter>,
    vercel: Family<StatusLabel, Counter>,
    rate_limit_waiting: Gauge,
    rate_limit_waits: Counter,
    rate_limit_exhausted: Counter,
    notifications: Family<NotificationLabels, Counter>,
    observations: Family<SourceLabel, Counter>,
    loops: Counter,
    last_pass: Gauge<f64, AtomicU64>,
    revision: Family<RevisionLabel, Gauge>,
    rollout_stage: Family<ClientLabel, Gauge>,
    rollout_percent: Family<ClientLabel, Gauge>,
    rollout_error_rate: Family<ClientLabel, Gauge<f64, AtomicU64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("steward");
        let reconcile = Histogram::new(BUCKETS);
        registry.register(
            "reconcile_duration_seconds",
            "Time to observe, plan and apply one client",
            reconcile.clone(),
        );
        let phases = Family::<PhaseLabel, Gauge>::default();
        registry.register("clients", "Clients by phase", phases.clone());
        let steps = Family::<StepLabels, Counter>::default();
        registry.register("steps", "Steps run, by kind and outcome", steps.clone());
        let vercel = Family::<StatusLabel, Counter>::default();
        registry.register(
            "vercel_requests",
            "Vercel API responses, by HTTP status",
            vercel.clone(),
        );
        let rate_limit_waiting = Gauge::default();
        registry.register(
            "vercel_rate_limit_waiting",
            "Clients whose Vercel calls wait on a rate-limit window now",
            rate_limit_waiting.clone(),
        );
        let rate_limit_waits = Counter::default();
        registry.register(
            "vercel_rate_limit_waits",
            "Vercel requests held until their rate-limit window reset",
            rate_limit_waits.clone(),
        );
        let rate_limit_exhausted = Counter::default();
        registry.register(
            "vercel_rate_limit_exhausted",
            "Vercel calls that gave up because the window would not reset within their budget",
            rate_limit_exhausted.clone(),
        );
        let notifications = Family::<NotificationLabels, Counter>::default();
        registry.register(
            "notifications",
            "Webhook notifications, by event and outcome",
            notifications.clone(),
        );
        let observations = Family::<SourceLabel, Counter>::default();
        registry.register(
            "database_observations",
            "Client database observations, live or reused from a recent live one (--db-resync)",
            observations.clone(),
        );
        let loops = Counter::default();
        registry.register("loops", "Passes over the fleet", loops.clone());
        let last_pass = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "last_pass_seconds",
            "How long the last pass over the fleet took",
            last_pass.clone(),
        );
        let revision = Family::<RevisionLabel, Gauge>::default();
        registry.register(
            "fleet_revision",
            "The fleet revision last loaded",
            revision.clone(),
        );
        let rollout_stage = Family::<ClientLabel, Gauge>::default();
        registry.register(
            "rollout_stage",
            "The stage a running rollout is in (1-based), by client",
            rollout_stage.clone(),
        );
        let rollout_percent = Family::<ClientLabel, Gauge>::default();
        registry.register(
            "rollout_canary_percent",
            "Percent of production traffic on a running rollout's new deployment, by client",
            rollout_percent.clone(),
        );
        let rollout_error_rate = Family::<ClientLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "rollout_canary_error_rate",
            "5xx share of a running rollout's new deployment in its stage so far, by client",
            rollout_error_rate.clone(),
        );
        let metrics = Metrics {
            registry: Arc::new(registry),
            reconcile,
            phases,
            steps,
            vercel,
            rate_limit_waiting,
            rate_limit_waits,
            rate_limit_exhausted,
            notifications,
            observations,
            loops,
            last_pass,
            revision,
            rollout_stage,
            rollout_percent,
            rollout_error_rate,
        };
        // Both sources are always exported, so a rate over them starts at zero.
        let counters = metrics.observation_counters();
        let _ = (counters.live.get(), counters.cached.get());
        metrics
    }

    pub fn observe_reconcile(&self, seconds: f64) {
        self.reconcile.observe(seconds);
    }

    pub fn step(&self, kind: &str, outcome: &str) {
        self.steps
            .get_or_create(&StepLabels {
                kind: kind.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// A running rollout's stage, percent and error rate; `None` when it ended (its
    /// series go away, so a dashboard shows only rollouts in flight).
    pub fn rollout(&self, client: &str, progress: Option<&crate::apply::RolloutProgress>) {
        let label = ClientLabel {
            client: client.to_owned(),
        };
        match progress {
            Some(p) => {
                self.rollout_stage.get_or_create(&label).set(p.stage as i64);
                self.rollout_percent
                    .get_or_create(&label)
                    .set(i64::from(p.percent));
                match p.error_rate {
                    Some(rate) => {
                        self.rollout_error_rate.get_or_create(&label).set(rate);
                    }
                    None => {
                        self.rollout_error_rate.remove(&label);
                    }
                }
            }
            None => {
                self.rollout_stage.remove(&label);
                self.rollout_percent.remove(&label);
                self.rollout_error_rate.remove(&label);
            }
        }
    }

    pub fn loop_done(&self, took: std::time::Duration) {
        self.loops.inc();
        self.last_pass.set(took.as_secs_f64());
    }

    /// Clients by phase, replacing the previous counts (a phase nobody is in goes away).
    pub fn set_phases(&self, phases: &BTreeMap<String, u64>) {
        self.phases.clear();
        for (phase, n) in phases {
            self.phases
                .get_or_create(&PhaseLabel {
                    phase: phase.clone(),
                })
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
    }

    pub fn set_revision(&self, revision: Option<&str>) {
        self.revision.clear();
        self.revision
            .get_or_create(&RevisionLabel {
                revision: escape(revision.unwrap_or("unknown")),
            })
            .set(1);
    }

    pub fn notification(&self, event: &str, outcome: &str) {
        self.notifications
            .get_or_create(&NotificationLabels {
                event: event.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// A counter of Vercel responses by status, for the Vercel client to call.
    pub fn vercel_responses(&self) -> crate::vercel::ResponseCounter {
        let family = self.vercel.clone();
        Arc::new(move |status: &str| {
            family
                .get_or_create(&StatusLabel {
                    status: status.to_owned(),
                })
                .inc();
        })
    }

    /// The live and cached observation counters, for the schema cache.
    pub fn observation_counters(&self) -> ObservationCounters {
        let get = |source: &str| {
            self.observations
                .get_or_create(&SourceLabel {
                    source: source.to_owned(),
                })
                .clone()
        };
        ObservationCounters {
            live: get("live"),
            cached: get("cached"),
        }
    }

    /// Vercel's rate limiter is one per process (all clients share Vercel's windows), so
    /// its counts are read at scrape time into this registry's series.
    fn sync_rate_limits(&self) {
        let waiting = crate::vercel::limiter::waiting().len();
        self.rate_limit_waiting
            .set(i64::try_from(waiting).unwrap_or(i64::MAX));
        let (waits, exhausted) = crate::vercel::limiter::waits();
        for (counter, total) in [
            (&self.rate_limit_waits, waits),
            (&self.rate_limit_exhausted, exhausted),
        ] {
            counter.inc_by(total.saturating_sub(counter.get()));
        }
    }

    /// The exposition, in the OpenMetrics text format.
    pub fn render(&self) -> String {
        self.sync_rate_limits();
        let mut out = String::new();
        if let Err(err) = encode(&mut out, &self.registry) {
            tracing::error!(%err, "cannot encode the metrics");
        }
        out
    }
}

/// A label value as the text format needs it: prometheus-client writes values as given,
/// and a fleet revision is free text (a branch name, whatever `git` answers).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line is a comment (`# HELP`/`# TYPE`/`# EOF`) or `name{labels} value`.
    #[test]
    fn the_exposition_parses_as_prometheus_text() {
        let m = Metrics::new();
        m.observe_reconcile(0.3);
        m.step("migrate_up", "succeeded");
        m.set_phases(&BTreeMap::from([("Converged".to_owned(), 2)]));
        m.set_revision(Some("abc\"def"));
        let text = m.render();
        for line in text.lines() {
            if line.starts_with('#') {
                continue;
            }
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("no value: {line}"));
            assert!(value.parse::<f64>().is_ok(), "bad value in {line}");
            let name_end = series.find('{').unwrap_or(series.len());
            let name = &series[..name_end];
            assert!(
                name.starts_with("steward_")
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "bad name in {line}"
            );
            if name_end < series.len() {
                assert!(series.ends_with('}'), "unclosed labels in {line}");
            }
        }
        assert!(
            text.contains("steward_reconcile_duration_seconds_bucket{le=\"0.5\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("steward_steps_total{kind=\"migrate_up\",outcome=\"succeeded\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("steward_clients{phase=\"Converged\"} 2"),
            "{text}"
        );
        assert!(text.contains("revision=\"abc\\\"def\""), "{text}");
    }

    #[test]
    fn a_step_recorded_from_many_threads_at_once_is_never_dropped() {
        let m = Metrics::new();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..500 {
                        m.step("promote", "succeeded");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert!(
            m.render()
                .contains("steward_steps_total{kind=\"promote\",outcome=\"succeeded\"} 4000"),
            "{}",
            m.render()
        );
    }

    #[test]
    fn phases_nobody_is_in_any_more_disappear() {
        let m = Metrics::new();
        m.set_phases(&BTreeMap::from([("Failed".to_owned(), 1)]));
        m.set_phases(&BTreeMap::from([("Converged".to_owned(), 1)]));
        let text = m.render();
        assert!(!text.contains("phase=\"Failed\""), "{text}");
        assert!(
            text.contains("steward_clients{phase=\"Converged\"} 1"),
            "{text}"
        );
    }
}
