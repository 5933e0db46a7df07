//! Untrusted text (migration SQL, manifest values, error messages, API answers) made
//! inert for the markdown of a PR comment: it renders as the words it is, never as a
//! heading, a link, an image, a mention or raw HTML.
//!
//! Each helper fits one context. A code span or fence is the strongest: nothing inside
//! one is parsed, and GitHub does not turn `@name` or a URL in code into a mention or a
//! link. Prose is escaped character by character, as CommonMark allows for any ASCII
//! punctuation.

/// A fenced code block whose fence is longer than any backtick run inside `body`, so no
/// line of the body can close it early.
pub fn fence(body: &str, info: &str) -> String {
    let ticks = "`".repeat((longest_backtick_run(body) + 1).max(3));
    let info: String = info.chars().filter(char::is_ascii_alphanumeric).collect();
    format!("{ticks}{info}\n{}\n{ticks}", body.trim_end())
}

/// An inline code span on one line, delimited by more backticks than any run inside.
pub fn code(text: &str) -> String {
    let one_line = single_line(text);
    let ticks = "`".repeat(longest_backtick_run(&one_line) + 1);
    // The parser removes one space on each side when both are there: padding lets the
    // content start or end with a backtick, or keep its own outer spaces.
    let pad = one_line.is_empty()
        || one_line.starts_with('`')
        || one_line.ends_with('`')
        || (one_line.starts_with(' ') && one_line.ends_with(' '));
    if pad {
        format!("{ticks} {one_line} {ticks}")
    } else {
        format!("{ticks}{one_line}{ticks}")
    }
}

/// Prose on one line: every ASCII punctuation character backslash-escaped, so nothing
/// in it opens emphasis, a link, an image, HTML, an entity, a heading or a list, and a
/// pipe never ends a table cell.
pub fn text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in single_line(text).chars() {
        if c.is_ascii_punctuation() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A code span inside a GFM table cell: GFM splits cells on `|` before it parses code
/// spans, so pipes are escaped even there.
pub fn code_cell(text_: &str) -> String {
    code(text_).replace('|', "\\|")
}

/// Text inside steward's own HTML tags (`<summary>`, `<code>`).
pub fn html(text_: &str) -> String {
    let mut out = String::with_capacity(text_.len());
    for c in single_line(text_).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // A backslash or backtick is literal in HTML, but GitHub's sanitizer and
            // markdown around the tag must not see a code span or an escape begin.
            '`' => out.push_str("&#96;"),
            '\\' => out.push_str("&#92;"),
            _ => out.push(c),
        }
    }
    out
}

fn single_line(text: &str) -> String {
    text.split(['\n', '\r'])
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn longest_backtick_run(text: &str) -> usize {
    text.split(|c| c != '`').map(str::len).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fence_is_longer_than_any_backtick_run_in_the_body() {
        let body = "select 1; -- ````` not the end\n```\n# heading?";
        let fenced = fence(body, "sql");
        assert!(fenced.starts_with("``````sql\n"), "{fenced}");
        assert!(fenced.ends_with("\n``````"), "{fenced}");
    }

    #[test]
    fn a_code_span_survives_backticks_at_its_edges() {
        assert_eq!(code("`x`"), "`` `x` ``");
        assert_eq!(code("a\nb"), "`a b`");
    }

    #[test]
    fn prose_escapes_every_markdown_opener() {
        assert_eq!(text("# [x](y) <b>"), r"\# \[x\]\(y\) \<b\>");
    }

    #[test]
    fn html_text_cannot_open_a_tag() {
        assert_eq!(html("<img src=x>"), "&lt;img src=x&gt;");
    }
}
