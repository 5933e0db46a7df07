//! `steward comment`: post the plan (JSON from `steward plan --format json`) as the one
//! sticky comment on a PR, and with `--sha` set the `steward/plan` commit status from the
//! plan's outcome. Credentials come from the environment (or the fleet's secret
//! reference), never from a flag, so they stay out of shell history and process lists.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde::Deserialize;

use crate::cli::CommentArgs;
use crate::exit::Exit;
use crate::github::{
    CommitState, DEFAULT_API_URL, GithubAuth, GithubClient, PLAN_STATUS_CONTEXT, Repo,
    StickyOutcome, sticky,
};
use crate::manifest::Fleet;
use crate::output::Printer;
use crate::plan::render::{COMMENT_MARKER, RunOutcome};
use crate::secret::{Secret, SecretRef};

/// What the command will do, checked before any network call.
#[derive(Debug)]
struct Settings {
    repo: Repo,
    pr: u64,
    sha: Option<String>,
    api_url: String,
    auth: GithubAuth,
    plan: PlanSource,
    full_plan_at: Option<String>,
}

#[derive(Debug)]
enum PlanSource {
    Stdin,
    File(PathBuf),
}

/// The parts of the plan JSON (`docs/plan-json.md`) this command reads.
#[derive(Debug, Deserialize)]
struct PlanDocument {
    version: u32,
    outcome: RunOutcome,
    summary: String,
    markdown: String,
}

pub async fn run(args: CommentArgs, printer: &Printer) -> Result<Exit> {
    let settings = settings(args, |name| std::env::var(name).ok())?;
    let plan = parse_plan(&read_plan(&settings.plan)?)?;
    let client = GithubClient::new(&settings.api_url, &settings.auth)?;
    let span = tracing::info_span!("comment", repo = %settings.repo, pr = settings.pr);
    let _entered = span.enter();

    let body = sticky::fit_body(&plan.markdown, settings.full_plan_at.as_deref());
    let outcome = client
        .upsert_sticky_comment(&settings.repo, settings.pr, COMMENT_MARKER, &body)
        .await?;
    let what = match outcome {
        StickyOutcome::Created(_) => "posted",
        StickyOutcome::Updated(_) => "updated",
        StickyOutcome::Unchanged(_) => "left unchanged (already current)",
    };
    let mut report = format!(
        "plan comment {what} on {}#{} (comment {})",
        settings.repo,
        settings.pr,
        outcome.id()
    );
    if let Some(sha) = &settings.sha {
        let (state, description) = status_for(&plan);
        client
            .set_status(&settings.repo, sha, state, &description)
            .await?;
        report.push_str(&format!(
            "\n{PLAN_STATUS_CONTEXT} status on {}: {} ({})",
            &sha[..12],
            state.as_str(),
            sticky::fit_description(&description)
        ));
    }
    printer.out(report);
    Ok(Exit::Success)
}

/// A plan that can be applied is a success; one that is blocked, or that failed to plan
/// for some client, is a failure, so branch protection can require it.
fn status_for(plan: &PlanDocument) -> (CommitState, String) {
    let state = match plan.outcome {
        RunOutcome::Clean | RunOutcome::Changes => CommitState::Success,
        RunOutcome::Blocked | RunOutcome::Invalid => CommitState::Failure,
    };
    (state, plan.summary.clone())
}

fn settings(args: CommentArgs, env: impl Fn(&str) -> Option<String>) -> Result<Settings> {
    let repo: Repo = args.repo.parse()?;
    if args.pr == 0 {
        bail!("--pr must be a pull request number (1 or more)");
    }
    if let Some(sha) = &args.sha
        && (sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        bail!("--sha `{sha}` is not a full 40-hex commit SHA");
    }
    let github = match &args.fleet {
        Some(dir) => Fleet::load(dir)?.manifest.spec.github,
        None => None,
    };
    let api_url = args
        .api_url
        .filter(|u| !u.trim().is_empty())
        .or_else(|| github.as_ref().map(|g| g.api_url.clone()))
        .unwrap_or_else(|| DEFAULT_API_URL.to_owned());
    let auth = auth(&env, github.as_ref().and_then(|g| g.token.as_ref()))?;
    let plan = match args.plan.as_str() {
        "-" => PlanSource::Stdin,
        path => PlanSource::File(PathBuf::from(path)),
    };
    let full_plan_at = args.full_plan_at.or_else(|| match &plan {
        PlanSource::File(path) => Some(format!("`{}`", path.display())),
        PlanSource::Stdin => None,
    });
    Ok(Settings {
        repo,
        pr: args.pr,
        sha: args.sha.map(|s| s.to_lowercase()),
        api_url,
        auth,
        plan,
        full_plan_at,
    })
}

/// A GitHub App when `GITHUB_APP_ID` is set (then all three App variables are needed);
/// else `GITHUB_TOKEN`; else the fleet's `spec.github.token`. No message ever quotes a
/// credential's value.
fn auth(
    env: &impl Fn(&str) -> Option<String>,
    fleet_token: Option<&SecretRef>,
) -> Result<GithubAuth> {
    let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    if let Some(app_id) = var("GITHUB_APP_ID") {
        let app_id: u64 = app_id
            .trim()
            .parse()
            .context("GITHUB_APP_ID is not a number (the App's numeric id)")?;
        let key = var("GITHUB_APP_PRIVATE_KEY").context(
            "GITHUB_APP_ID is set but GITHUB_APP_PRIVATE_KEY is not (the App's PEM key, or a path to it)",
        )?;
        let installation_id: u64 = var("GITHUB_INSTALLATION_ID")
            .context("GITHUB_APP_ID is set but GITHUB_INSTALLATION_ID is not")?
            .trim()
            .parse()
            .context("GITHUB_INSTALLATION_ID is not a number")?;
        return Ok(GithubAuth::App {
            app_id,
            private_key_pem: private_key(key)?,
            installation_id,
        });
    }
    if let Some(token) = var("GITHUB_TOKEN") {
        return Ok(GithubAuth::Token(Secret::new(token.trim())));
    }
    if let Some(reference) = fleet_token {
        let token = reference
            .resolve()
            .context("the fleet's spec.github.token cannot be read")?;
        return Ok(GithubAuth::Token(token));
    }
    bail!(
        "no GitHub credentials: set GITHUB_TOKEN, or GITHUB_APP_ID, GITHUB_APP_PRIVATE_KEY and GITHUB_INSTALLATION_ID"
    )
}

/// `GITHUB_APP_PRIVATE_KEY` holds the PEM itself or the path of a file holding it.
fn private_key(value: String) -> Result<Secret> {
    if value.contains("-----BEGIN") {
        // CI systems often flatten newlines in secrets to a literal `\n`.
        return Ok(Secret::new(value.replace("\\n", "\n")));
    }
    let path = Path::new(value.trim());
    // Only a value that looks like a path is quoted back; anything else may be a key.
    let shown = if value.len() <= 255 && !value.contains('\n') {
        format!(" {}", path.display())
    } else {
        String::new()
    };
    let pem = std::fs::read_to_string(path).with_context(|| {
        format!("GITHUB_APP_PRIVATE_KEY is neither a PEM key nor a readable file{shown}")
    })?;
    Ok(Secret::new(pem))
}

fn read_plan(source: &PlanSource) -> Result<String> {
    match source {
        PlanSource::Stdin => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the plan from stdin")?;
            if text.trim().is_empty() {
                bail!(
                    "no plan on stdin: pipe `steward plan --format json` in, or pass --plan FILE"
                );
            }
            Ok(text)
        }
        PlanSource::File(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the plan {}", path.display())),
    }
}

fn parse_plan(text: &str) -> Result<PlanDocument> {
    let plan: PlanDocument = serde_json::from_str(text).context(
        "the plan is not the JSON of `steward plan --format json` (see docs/plan-json.md)",
    )?;
    if plan.version != 1 {
        bail!(
            "the plan JSON is version {}; this steward reads version 1",
            plan.version
        );
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn an_app_needs_all_three_variables_and_wins_over_a_token() {
        let vars = [("GITHUB_APP_ID", "12"), ("GITHUB_TOKEN", "ghp_x")];
        let err = auth(&env(&vars), None).expect_err("incomplete App");
        assert!(err.to_string().contains("GITHUB_APP_PRIVATE_KEY"), "{err}");
        let vars = [
            ("GITHUB_APP_ID", "12"),
            (
                "GITHUB_APP_PRIVATE_KEY",
                "-----BEGIN RSA PRIVATE KEY-----\\nabc",
            ),
            ("GITHUB_INSTALLATION_ID", "34"),
            ("GITHUB_TOKEN", "ghp_x"),
        ];
        match auth(&env(&vars), None).expect("app") {
            GithubAuth::App {
                app_id,
                installation_id,
                private_key_pem,
            } => {
                assert_eq!((app_id, installation_id), (12, 34));
                assert!(private_key_pem.expose().contains("-----\nabc"));
            }
            other => panic!("expected an App, got {other:?}"),
        }
    }

    #[test]
    fn without_any_credentials_the_error_names_the_variables() {
        let err = auth(&env(&[]), None).expect_err("nothing set");
        assert!(err.to_string().contains("GITHUB_TOKEN"), "{err}");
    }

    #[test]
    fn a_key_that_is_not_a_readable_path_is_not_quoted_back() {
        let err = private_key("line one\nline two".to_owned()).expect_err("not a key");
        assert!(!format!("{err:#}").contains("line one"), "{err:#}");
    }

    #[test]
    fn a_blocked_or_invalid_plan_fails_the_status_and_changes_pass_it() {
        let plan = |outcome| PlanDocument {
            version: 1,
            outcome,
            summary: "steward plan: 1 client".to_owned(),
            markdown: String::new(),
        };
        assert_eq!(status_for(&plan(RunOutcome::Clean)).0, CommitState::Success);
        assert_eq!(
            status_for(&plan(RunOutcome::Changes)).0,
            CommitState::Success
        );
        assert_eq!(
            status_for(&plan(RunOutcome::Blocked)).0,
            CommitState::Failure
        );
        assert_eq!(
            status_for(&plan(RunOutcome::Invalid)).0,
            CommitState::Failure
        );
    }

    #[test]
    fn a_plan_of_another_version_is_refused() {
        let text = r#"{"version": 2, "outcome": "clean", "summary": "s", "markdown": "m"}"#;
        assert!(parse_plan(text).is_err());
    }
}
