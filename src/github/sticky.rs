//! The pure half of the sticky comment: which existing comment is ours, whether its body
//! already says what we would write, and how to cut a body to GitHub's limits. No I/O, so
//! every rule is a table test.

use super::client::Identity;

/// GitHub refuses comment bodies longer than this many characters.
pub const MAX_COMMENT_CHARS: usize = 65_536;
/// GitHub refuses commit-status descriptions longer than this many characters.
pub const MAX_DESCRIPTION_CHARS: usize = 140;

/// What `upsert_sticky_comment` did, with the comment's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StickyOutcome {
    Created(u64),
    Updated(u64),
    /// The comment already said exactly this; nothing was written.
    Unchanged(u64),
}

impl StickyOutcome {
    pub fn id(self) -> u64 {
        match self {
            StickyOutcome::Created(id)
            | StickyOutcome::Updated(id)
            | StickyOutcome::Unchanged(id) => id,
        }
    }
}

/// The parts of a listed comment the choice depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: u64,
    pub login: String,
    /// GitHub's `user.type`: `User` or `Bot`.
    pub kind: String,
    pub body: String,
}

/// Our sticky comment: it carries the marker and we wrote it (someone quoting the marker
/// must not have their comment overwritten). With several, the oldest (lowest id) wins,
/// so the comment keeps its place in the conversation.
pub fn find<'a>(comments: &'a [Candidate], marker: &str, me: &Identity) -> Option<&'a Candidate> {
    comments
        .iter()
        .filter(|c| c.body.contains(marker) && me.wrote(&c.login, &c.kind))
        .min_by_key(|c| c.id)
}

/// Whether an existing body already says `wanted`. GitHub may hand a body back with
/// `\r\n` line ends or without the trailing newline, which must not count as a change
/// (or every run would write).
pub fn same_body(existing: &str, wanted: &str) -> bool {
    let normal = |s: &str| s.replace("\r\n", "\n").trim_end().to_owned();
    normal(existing) == normal(wanted)
}

/// Make `body` fit in a comment. A longer one is cut at a line end, any open code fence
/// or `<details>` is closed so the rest renders, and a note says where the whole plan is
/// (`full_plan_at`, e.g. a CI artifact), or how to see it.
pub fn fit_body(body: &str, full_plan_at: Option<&str>) -> String {
    if body.chars().count() <= MAX_COMMENT_CHARS {
        return body.to_owned();
    }
    let note = match full_plan_at {
        Some(at) => format!(
            "\n\n---\n**This plan is too long for a comment and was cut here.** The full plan is in {at}.\n"
        ),
        None => "\n\n---\n**This plan is too long for a comment and was cut here.** Run `steward plan` to see all of it.\n".to_owned(),
    };
    let mut budget = MAX_COMMENT_CHARS.saturating_sub(note.chars().count());
    loop {
        let mut cut: String = body.chars().take(budget).collect();
        if let Some(end) = cut.rfind('\n') {
            cut.truncate(end);
        }
        if let Some(fence) = open_fence(&cut) {
            cut.push('\n');
            cut.push_str(&fence);
        }
        let opened = cut.matches("<details").count();
        let closed = cut.matches("</details>").count();
        for _ in closed..opened {
            cut.push_str("\n\n</details>");
        }
        cut.push_str(&note);
        let length = cut.chars().count();
        if length <= MAX_COMMENT_CHARS || budget == 0 {
            // Only an absurd `full_plan_at` can leave the note alone over the limit.
            return cut.chars().take(MAX_COMMENT_CHARS).collect();
        }
        budget = budget.saturating_sub(length - MAX_COMMENT_CHARS);
    }
}

/// The backtick fence still open at the end of `text`, if any. A fence is closed only by
/// a line of at least as many backticks (the plan fences SQL with more backticks than the
/// SQL holds), so counting fence lines is not enough.
fn open_fence(text: &str) -> Option<String> {
    let mut open: Option<usize> = None;
    for line in text.lines() {
        let line = line.trim_start();
        let ticks = line.len() - line.trim_start_matches('`').len();
        match open {
            None if ticks >= 3 => open = Some(ticks),
            Some(n) if ticks >= n && line.trim_end().len() == ticks => open = None,
            _ => {}
        }
    }
    open.map(|n| "`".repeat(n))
}

/// A status description GitHub accepts: one line, at most 140 characters.
pub fn fit_description(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default().trim();
    if line.chars().count() <= MAX_DESCRIPTION_CHARS {
        return line.to_owned();
    }
    let mut cut: String = line.chars().take(MAX_DESCRIPTION_CHARS - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARKER: &str = "<!-- steward:plan -->";

    fn comment(id: u64, login: &str, kind: &str, body: &str) -> Candidate {
        Candidate {
            id,
            login: login.to_owned(),
            kind: kind.to_owned(),
            body: body.to_owned(),
        }
    }

    #[test]
    fn the_sticky_comment_is_the_oldest_of_ours_that_carries_the_marker() {
        let me = Identity::User("ci-bot".to_owned());
        let comments = [
            comment(1, "alice", "User", &format!("quoting {MARKER}")),
            comment(2, "ci-bot", "User", "no marker here"),
            comment(5, "ci-bot", "User", &format!("{MARKER}\nnewer")),
            comment(3, "CI-Bot", "User", &format!("{MARKER}\nolder")),
        ];
        assert_eq!(find(&comments, MARKER, &me).map(|c| c.id), Some(3));
        assert_eq!(find(&comments[..2], MARKER, &me), None);
    }

    #[test]
    fn an_app_owns_only_comments_by_its_bot_account() {
        let me = Identity::App("steward[bot]".to_owned());
        let comments = [
            comment(1, "steward", "User", MARKER),
            comment(2, "other[bot]", "Bot", MARKER),
            comment(3, "steward[bot]", "Bot", MARKER),
        ];
        assert_eq!(find(&comments, MARKER, &me).map(|c| c.id), Some(3));
        // An integration token that cannot look itself up owns any bot's marked comment.
        let some_bot = Identity::SomeBot;
        assert_eq!(find(&comments, MARKER, &some_bot).map(|c| c.id), Some(2));
    }

    #[test]
    fn line_ends_and_a_trailing_newline_are_not_a_change() {
        assert!(same_body("a\r\nb", "a\nb\n"));
        assert!(!same_body("a\nb", "a\nc"));
    }

    #[test]
    fn a_short_body_is_left_alone() {
        assert_eq!(fit_body("hello", Some("artifact")), "hello");
    }

    #[test]
    fn a_cut_inside_a_long_fence_is_closed_with_a_fence_as_long() {
        let text = "``````sql\nselect 1; -- ```\n```\nselect 2;";
        assert_eq!(open_fence(text).as_deref(), Some("``````"));
        assert_eq!(open_fence("````sql\nx\n````\n"), None);
    }

    #[test]
    fn a_long_body_is_cut_to_the_limit_with_fences_closed_and_a_note() {
        let mut body = format!("{MARKER}\n<details><summary>x</summary>\n\n```sql\n");
        while body.chars().count() < 80_000 {
            body.push_str("ALTER TABLE accounts ADD COLUMN é text;\n");
        }
        let fitted = fit_body(&body, Some("the `steward-plan` artifact"));
        assert!(fitted.chars().count() <= MAX_COMMENT_CHARS);
        assert!(fitted.starts_with(MARKER));
        assert!(fitted.contains("The full plan is in the `steward-plan` artifact."));
        let fences = fitted.lines().filter(|l| l.starts_with("```")).count();
        assert_eq!(fences % 2, 0, "the code fence is closed");
        assert!(fitted.contains("</details>"));
    }

    #[test]
    fn a_description_is_one_line_of_at_most_140_characters() {
        assert_eq!(fit_description("all clean\nsecond line"), "all clean");
        let long = "x".repeat(300);
        let fitted = fit_description(&long);
        assert_eq!(fitted.chars().count(), MAX_DESCRIPTION_CHARS);
        assert!(fitted.ends_with('…'));
    }
}
