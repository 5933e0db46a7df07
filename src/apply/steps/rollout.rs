//! The staged rollout: configure the project's rolling release with the policy's stages,
//! start it for the new deployment, and judge each stage on live traffic before the next
//! one. A stage is judged on the canary's 5xx rate from its runtime logs over the stage
//! (against `analysis.maxErrorRate`, and against the previous deployment over the same
//! window: a canary that fails no more than the code it replaces is not blamed), and on
//! its health check. A bad stage aborts at once: all traffic goes back to the previous
//! deployment before the executor undoes anything else.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::{Ctx, Scratch, StepError};
use crate::apply::{RolloutProgress, StepEvent};
use crate::manifest::{Analysis, InsufficientTraffic, RolloutStage};
use crate::plan::{Step, rate};
use crate::vercel::rolling::{Availability, RequestCounts};
use crate::vercel::{self, VercelClient};

/// One stage's verdict, with the figures it was judged on (kept in the update record).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageVerdict {
    pub stage: usize,
    pub percent: u8,
    pub requests: u64,
    pub errors: u64,
    /// The canary's 5xx share, `None` without requests.
    pub rate: Option<f64>,
    /// The previous deployment's 5xx share over the same window.
    pub baseline_rate: Option<f64>,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Healthy,
    /// Fewer requests than `minRequests`, and `onInsufficientTraffic: proceed`.
    ProceededOnLowTraffic,
    /// Fewer requests than `minRequests`, and `onInsufficientTraffic: hold`.
    Held,
    /// The 5xx rate was over the threshold and the baseline.
    ErrorRate,
}

impl std::fmt::Display for StageVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |r: Option<f64>| r.map_or("n/a".to_owned(), rate);
        write!(
            f,
            "stage {} ({}%): {} requests, {} 5xx ({}; previous deployment {})",
            self.stage + 1,
            self.percent,
            self.requests,
            self.errors,
            show(self.rate),
            show(self.baseline_rate),
        )
    }
}

/// Judge a stage's figures (pure: table-tested below).
pub fn judge(canary: RequestCounts, baseline: RequestCounts, analysis: &Analysis) -> Verdict {
    let Some(rate) = canary.error_rate() else {
        return insufficient(analysis);
    };
    // Over the threshold, and worse than the old code under the same traffic.
    let worse = baseline.error_rate().is_none_or(|b| rate > b);
    if rate > analysis.max_error_rate() && worse && canary.requests >= analysis.min_requests {
        return Verdict::ErrorRate;
    }
    if canary.requests < analysis.min_requests {
        return insufficient(analysis);
    }
    Verdict::Healthy
}

fn insufficient(analysis: &Analysis) -> Verdict {
    match analysis.on_insufficient_traffic {
        InsufficientTraffic::Hold => Verdict::Held,
        InsufficientTraffic::Proceed => Verdict::ProceededOnLowTraffic,
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// How often a stage is looked at: health and figures, so a bad canary is aborted early.
fn tick(stage: Duration) -> Duration {
    (stage / 5).clamp(Duration::from_millis(250), Duration::from_secs(15))
}

/// Tell the runner's watchers (daemon status and metrics, progress lines) where the
/// rollout stands.
fn report(ctx: &Ctx<'_>, step: &Step, progress: RolloutProgress) {
    if let Some(on_step) = &ctx.runner.on_step {
        on_step(ctx.name(), step, StepEvent::Rollout(progress));
    }
}

pub async fn run(ctx: &Ctx<'_>, step: &Step, scratch: &mut Scratch) -> Result<(), StepError> {
    let Step::Rollout {
        previous,
        stages,
        analysis,
    } = step
    else {
        return Err(StepError::Missing("not a rollout step"));
    };
    let previous = previous.as_deref();
    let link = ctx.link()?;
    let client = link.api;
    let project = link.project.id.as_str();
    let canary = scratch
        .deployment
        .clone()
        .ok_or(StepError::Missing("no deployment to roll out"))?;
    let host = canary
        .url
        .clone()
        .ok_or(StepError::Missing("the deployment has no URL"))?;
    let previous = previous.ok_or(StepError::Missing("a rollout needs a previous deployment"))?;
    let percents: Vec<u8> = stages.iter().map(|s| s.percent).collect();
    if let Availability::Unavailable { message, .. } =
        client.configure_rolling_release(project, &percents).await?
    {
        return Err(StepError::Rollout(format!(
            "rolling releases became unavailable for this project since planning: {message}"
        )));
    }
    // A release left running by an interrupted run is aborted first: its canary is not
    // this one, and Vercel runs one release at a time.
    if let Some(stale) = client.active_rolling_release(project).await?
        && let Some(current) = stale.current_id()
    {
        tracing::warn!(client = %ctx.name(), canary = ?stale.canary_id(), "aborting a rolling release left by an interrupted run");
        client.abort_rolling_release(project, current).await?;
    }
    client.start_rolling_release(project, &canary.id).await?;
    let last = stages.len().saturating_sub(1);
    for (index, stage) in stages.iter().enumerate() {
        if index == last {
            break;
        }
        if index > 0 {
            client
                .approve_rolling_stage(project, &canary.id, index)
                .await?;
        }
        let progress = RolloutProgress {
            stage: index + 1,
            stages: stages.len(),
            percent: stage.percent,
            error_rate: None,
        };
        report(ctx, step, progress.clone());
        let seen = |rate| {
            report(
                ctx,
                step,
                RolloutProgress {
                    error_rate: rate,
                    ..progress.clone()
                },
            )
        };
        let verdict = watch(
            ctx,
            client,
            (&canary.id, previous, &host),
            (index, stage),
            analysis,
            &seen,
        )
        .await;
        let verdict = match verdict {
            Ok(verdict) => verdict,
            Err(err) => {
                if matches!(err.class(), super::ErrorClass::Release) {
                    client.abort_rolling_release(project, previous).await?;
                }
                return Err(err);
            }
        };
        tracing::info!(client = %ctx.name(), %verdict, verdict = ?verdict.verdict, "rollout stage judged");
        scratch.rollout.push(verdict.clone());
        match verdict.verdict {
            Verdict::Healthy | Verdict::ProceededOnLowTraffic => {}
            Verdict::ErrorRate => {
                client.abort_rolling_release(project, previous).await?;
                return Err(StepError::Rollout(format!(
                    "aborted: {verdict} is over policy.rollout.analysis.maxErrorRate {}; all traffic is back on {previous}",
                    rate(analysis.max_error_rate())
                )));
            }
            Verdict::Held => {
                client.abort_rolling_release(project, previous).await?;
                return Err(StepError::RolloutHeld(format!(
                    "held: {verdict}, fewer than policy.rollout.analysis.minRequests {}; all traffic is back on {previous} until an operator retries (or sets onInsufficientTraffic: proceed)",
                    analysis.min_requests
                )));
            }
        }
    }
    client.complete_rolling_release(project, &canary.id).await?;
    report(
        ctx,
        step,
        RolloutProgress {
            stage: stages.len(),
            stages: stages.len(),
            percent: 100,
            error_rate: None,
        },
    );
    vercel::confirm_promoted(client, project, &canary.id).await?;
    Ok(())
}

/// Watch one stage for its duration: health on every tick (a failure ends the stage at
/// once), the figures at its end, or earlier once they already condemn the canary.
async fn watch(
    ctx: &Ctx<'_>,
    client: &VercelClient,
    (canary, previous, host): (&str, &str, &str),
    (index, stage): (usize, &RolloutStage),
    analysis: &Analysis,
    seen: &dyn Fn(Option<f64>),
) -> Result<StageVerdict, StepError> {
    let project = ctx.link()?.project.id.as_str();
    let health = &ctx.client.config.policy.health;
    let routes = &ctx.fleet.manifest.spec.vercel.connect_to;
    let since = now_ms();
    let until = Instant::now() + stage.duration;
    loop {
        if analysis.health {
            vercel::health::check(host, health, routes)
                .await
                .map_err(StepError::Bake)?;
        }
        let done = Instant::now() >= until;
        let now = now_ms();
        let counts = client.request_counts(project, canary, since, now).await?;
        seen(counts.error_rate());
        let condemned = counts.requests >= analysis.min_requests
            && counts
                .error_rate()
                .is_some_and(|r| r > analysis.max_error_rate());
        if done || condemned {
            let baseline = client.request_counts(project, previous, since, now).await?;
            let verdict = judge(counts, baseline, analysis);
            // An early look that the baseline excuses keeps watching.
            if done || verdict == Verdict::ErrorRate {
                return Ok(StageVerdict {
                    stage: index,
                    percent: stage.percent,
                    requests: counts.requests,
                    errors: counts.errors,
                    rate: counts.error_rate(),
                    baseline_rate: baseline.error_rate(),
                    verdict,
                });
            }
        }
        if ctx.runner.stopping() {
            return Err(StepError::Stopped("rollout"));
        }
        tokio::time::sleep(
            tick(stage.duration).min(until.saturating_duration_since(Instant::now())),
        )
        .await;
    }
}

/// Undo a rollout: abort it if it still runs, or put `previous` back in production once
/// it completed. Idempotent: a rollout the step already aborted is left as it is.
pub async fn undo(ctx: &Ctx<'_>, previous: Option<&str>) -> Result<(), StepError> {
    let link = ctx.link()?;
    let client = link.api;
    let project = link.project.id.as_str();
    let Some(previous) = previous else {
        return Ok(());
    };
    if let Some(active) = client.active_rolling_release(project).await?
        && active.current_id() == Some(previous)
    {
        client.abort_rolling_release(project, previous).await?;
        return Ok(());
    }
    let production = client.project(project).await?;
    if production.production().map(|d| d.id.as_str()) != Some(previous) {
        vercel::rollback(client, project, previous).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(requests: u64, errors: u64) -> RequestCounts {
        RequestCounts { requests, errors }
    }

    fn analysis(on_low: InsufficientTraffic) -> Analysis {
        Analysis {
            max_error_bp: 100,
            min_requests: 50,
            health: true,
            on_insufficient_traffic: on_low,
        }
    }

    #[test]
    fn a_canary_over_the_threshold_and_worse_than_the_baseline_fails_its_stage() {
        let a = analysis(InsufficientTraffic::Hold);
        assert_eq!(
            judge(counts(100, 20), counts(900, 0), &a),
            Verdict::ErrorRate
        );
        assert_eq!(judge(counts(100, 20), counts(0, 0), &a), Verdict::ErrorRate);
    }

    #[test]
    fn a_canary_failing_no_more_than_the_code_it_replaces_is_not_blamed() {
        let a = analysis(InsufficientTraffic::Hold);
        assert_eq!(judge(counts(100, 5), counts(900, 45), &a), Verdict::Healthy);
        assert_eq!(judge(counts(100, 1), counts(900, 0), &a), Verdict::Healthy);
    }

    #[test]
    fn too_few_requests_hold_or_proceed_as_the_policy_says() {
        assert_eq!(
            judge(
                counts(10, 0),
                counts(90, 0),
                &analysis(InsufficientTraffic::Hold)
            ),
            Verdict::Held
        );
        assert_eq!(
            judge(
                counts(0, 0),
                counts(0, 0),
                &analysis(InsufficientTraffic::Proceed)
            ),
            Verdict::ProceededOnLowTraffic
        );
    }
}
