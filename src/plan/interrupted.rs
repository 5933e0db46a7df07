//! What the update records say about a run that never finished: the executor writes an
//! `intent` before each step and the step's outcome after it, so an intent with no
//! outcome in the newest run means the process died during that step. Live state says
//! what is; only this record can say that a bake never finished on the build that is now
//! production. Pure: the events come in, the finding goes out.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::APPLY;

/// One `steward_events` row of a run (the newest apply run, or the newest request), in
/// the order written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEvent {
    pub step: String,
    pub outcome: String,
    pub deployment: Option<String>,
    /// For an intent: `{"step": ..., "undo": ...}` as JSON.
    pub detail: Option<String>,
    pub at: DateTime<Utc>,
}

/// The newest run stopped without finishing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Interruption {
    /// The run's command: `apply`, or the operator's request (`restore`, `migrate`, …).
    pub command: String,
    /// The step that was running, or the step where the run stopped.
    pub step: String,
    pub at: DateTime<Utc>,
    /// Whether the process died during `step` (an intent without an outcome), as opposed
    /// to a run that recorded why it stopped.
    pub died: bool,
    /// A bake that never finished on a build that was promoted.
    pub unfinished_bake: Option<UnfinishedBake>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnfinishedBake {
    /// The promoted deployment whose bake did not finish.
    pub deployment: String,
    /// Production before that run promoted it: what an undo promotes again.
    pub previous: Option<String>,
}

impl std::fmt::Display for Interruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = self.at.format("%Y-%m-%d %H:%M:%S UTC");
        if self.command != APPLY {
            write!(f, "`steward {}` ", self.command)?;
        }
        if self.died {
            write!(f, "interrupted during {} at {at}", self.step)?;
        } else {
            write!(f, "stopped at {} at {at}", self.step)?;
        }
        if self.command != APPLY {
            write!(
                f,
                "; the steps it finished are live (`steward history` lists them): run it again, or undo them"
            )?;
        }
        if let Some(bake) = &self.unfinished_bake {
            write!(
                f,
                "; the bake of {} never finished, so it runs again on the live deployment",
                bake.deployment
            )?;
        }
        Ok(())
    }
}

/// Split the events since the newest apply run started (`(id, plan hash, event)`, in
/// order) into that run's and the newest operator's request's since: each run's events
/// are the ones under its plan hash from its start on. A request from before the apply
/// run is not news: that run started from what was live.
pub fn split_runs(events: Vec<(i64, String, RunEvent)>) -> (Vec<RunEvent>, Vec<RunEvent>) {
    let started = |apply: bool| {
        events
            .iter()
            .rev()
            .find(|(_, _, e)| e.outcome == "started" && (e.step == APPLY) == apply)
            .map(|(id, hash, _)| (*id, hash.clone()))
    };
    let of = |start: Option<(i64, String)>| -> Vec<RunEvent> {
        let Some((from, hash)) = start else {
            return Vec::new();
        };
        events
            .iter()
            .filter(|(id, h, _)| *id >= from && *h == hash)
            .map(|(_, _, e)| e.clone())
            .collect()
    };
    (of(started(true)), of(started(false)))
}

/// Judge the newest run's events. `None` when it finished (completed, failed or rolled
/// back), or stopped between steps with nothing left half-done.
pub fn judge(events: &[RunEvent]) -> Option<Interruption> {
    // The run's first event is its start, under its command.
    let command = events
        .iter()
        .find(|e| e.outcome == "started")
        .map_or(APPLY, |e| e.step.as_str());
    let finished = events.iter().any(|e| {
        e.step == command && matches!(e.outcome.as_str(), "completed" | "failed" | "rolled_back")
    });
    if finished {
        return None;
    }
    let mut open: Option<&RunEvent> = None;
    let mut deployment = None;
    let mut previous = None;
    let mut promoted = false;
    let mut baked = false;
    let mut bake_stopped: Option<&RunEvent> = None;
    for e in events {
        if e.outcome == "intent" {
            open = Some(e);
        } else if open.is_some_and(|o| o.step == e.step) {
            open = None;
        }
        match (e.step.as_str(), e.outcome.as_str()) {
            ("promote", "intent") => previous = intent_field(e, "previous"),
            ("promote", "succeeded") => {
                promoted = true;
                deployment = e.deployment.clone().or(deployment);
            }
            ("rebake", "intent") => {
                promoted = true;
                previous = intent_field(e, "previous");
                deployment = e.deployment.clone().or(deployment);
            }
            ("bake", "intent") => deployment = e.deployment.clone().or(deployment),
            ("bake" | "rebake", "succeeded") => baked = true,
            ("bake" | "rebake", _) => bake_stopped = Some(e),
            _ => {}
        }
    }
    let unfinished_bake = match deployment {
        Some(deployment) if promoted && !baked => Some(UnfinishedBake {
            deployment,
            previous,
        }),
        _ => None,
    };
    let stopped = open.or(bake_stopped.filter(|_| unfinished_bake.is_some()))?;
    Some(Interruption {
        command: command.to_owned(),
        step: stopped.step.clone(),
        at: stopped.at,
        died: open.is_some(),
        unfinished_bake,
    })
}

/// A field of the step an intent recorded (`{"step": {"kind": ..., FIELD: ...}}`).
fn intent_field(e: &RunEvent, field: &str) -> Option<String> {
    let detail: serde_json::Value = serde_json::from_str(e.detail.as_deref()?).ok()?;
    detail["step"][field].as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u32) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + i64::from(s), 0).expect("time")
    }

    fn ev(step: &str, outcome: &str, deployment: Option<&str>, detail: Option<&str>) -> RunEvent {
        RunEvent {
            step: step.to_owned(),
            outcome: outcome.to_owned(),
            deployment: deployment.map(str::to_owned),
            detail: detail.map(str::to_owned),
            at: at(0),
        }
    }

    fn promoted_then(rest: &[RunEvent]) -> Vec<RunEvent> {
        let mut events = vec![
            ev("apply", "started", None, None),
            ev("deploy", "intent", None, None),
            ev("deploy", "succeeded", Some("dpl_new"), None),
            ev(
                "promote",
                "intent",
                Some("dpl_new"),
                Some(r#"{"step":{"kind":"promote","previous":"dpl_old"}}"#),
            ),
            ev("promote", "succeeded", Some("dpl_new"), None),
        ];
        events.extend_from_slice(rest);
        events
    }

    #[test]
    fn a_process_killed_during_the_bake_leaves_an_unfinished_bake_of_the_promoted_build() {
        let events = promoted_then(&[ev("bake", "intent", Some("dpl_new"), None)]);
        let found = judge(&events).expect("interrupted");
        assert_eq!(found.step, "bake");
        assert!(found.died);
        assert_eq!(
            found.unfinished_bake,
            Some(UnfinishedBake {
                deployment: "dpl_new".to_owned(),
                previous: Some("dpl_old".to_owned()),
            })
        );
        assert!(found.to_string().starts_with("interrupted during bake at "));
    }

    #[test]
    fn a_run_that_completed_or_failed_is_not_interrupted() {
        for end in ["completed", "failed", "rolled_back"] {
            let events = promoted_then(&[
                ev("bake", "intent", Some("dpl_new"), None),
                ev("apply", end, None, None),
            ]);
            assert_eq!(judge(&events), None, "{end}");
        }
    }

    #[test]
    fn a_process_killed_before_promote_reports_the_step_and_needs_no_bake() {
        let events = vec![
            ev("apply", "started", None, None),
            ev("deploy", "intent", None, None),
        ];
        let found = judge(&events).expect("interrupted");
        assert_eq!((found.step.as_str(), found.died), ("deploy", true));
        assert_eq!(found.unfinished_bake, None);
    }

    #[test]
    fn a_bake_stopped_by_a_transient_failure_is_unfinished_but_the_process_did_not_die() {
        let events = promoted_then(&[
            ev("bake", "intent", Some("dpl_new"), None),
            ev("bake", "interrupted", Some("dpl_new"), None),
            ev("apply", "manual", None, Some("interrupted: transient: ...")),
        ]);
        let found = judge(&events).expect("interrupted");
        assert!(!found.died);
        assert!(found.unfinished_bake.is_some());
    }

    #[test]
    fn a_run_stopped_between_steps_with_every_step_finished_is_not_interrupted() {
        let events = vec![
            ev("apply", "started", None, None),
            ev("migrate_up", "intent", None, None),
            ev("migrate_up", "succeeded", None, None),
            ev(
                "apply",
                "manual",
                None,
                Some("interrupted: shutdown after migrate_up"),
            ),
        ];
        assert_eq!(judge(&events), None);
    }

    #[test]
    fn a_request_killed_during_a_step_is_interrupted_under_its_own_command() {
        let events = vec![
            ev("restore", "started", None, None),
            ev("pause", "intent", None, None),
            ev("pause", "succeeded", None, None),
            ev("restore", "intent", None, None),
        ];
        let found = judge(&events).expect("interrupted");
        assert_eq!(
            (found.command.as_str(), found.step.as_str(), found.died),
            ("restore", "restore", true)
        );
        assert!(
            found
                .to_string()
                .starts_with("`steward restore` interrupted during restore at "),
            "{found}"
        );
        let mut finished = events.clone();
        finished.push(ev("restore", "succeeded", None, None));
        finished.push(ev("restore", "completed", None, None));
        assert_eq!(judge(&finished), None);
    }

    #[test]
    fn a_request_run_after_a_killed_apply_is_split_from_it_by_plan_hash() {
        let tagged = |id: i64, hash: &str, e: RunEvent| (id, hash.to_owned(), e);
        let events = vec![
            tagged(1, "a", ev("apply", "started", None, None)),
            tagged(2, "a", ev("bake", "intent", Some("dpl_new"), None)),
            tagged(3, "b", ev("backup", "started", None, None)),
            tagged(4, "b", ev("backup", "intent", None, None)),
            tagged(5, "b", ev("backup", "succeeded", None, None)),
            tagged(6, "b", ev("backup", "completed", None, None)),
        ];
        let (run, request) = split_runs(events);
        assert_eq!(run.len(), 2);
        assert_eq!(judge(&run).map(|i| i.step), Some("bake".to_owned()));
        assert_eq!(request.len(), 4);
        assert_eq!(judge(&request), None);
    }

    #[test]
    fn a_rebake_killed_again_is_still_unfinished_with_the_same_undo() {
        let events = vec![
            ev("apply", "started", None, None),
            ev(
                "rebake",
                "intent",
                Some("dpl_new"),
                Some(r#"{"step":{"kind":"rebake","deployment":"dpl_new","previous":"dpl_old"}}"#),
            ),
        ];
        let found = judge(&events).expect("interrupted");
        assert_eq!(
            found.unfinished_bake.map(|b| b.previous),
            Some(Some("dpl_old".to_owned()))
        );
    }
}
