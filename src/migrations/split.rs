//! Splitting a SQL file into statements, each with the line it starts on. Quotes,
//! quoted identifiers, dollar-quoted bodies (`$fn$ ... $fn$`) and both comment styles are
//! respected, so a `;` inside a function body or a string never splits a statement.

/// One statement and the 1-based line of the file it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub line: usize,
    pub sql: String,
}

pub fn split(sql: &str) -> Vec<Statement> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let push = |from: usize, to: usize, out: &mut Vec<Statement>| {
        let text = &sql[from..to];
        if has_code(text) {
            let lead = text.len() - text.trim_start().len();
            let line = 1 + sql[..from + lead].bytes().filter(|&b| b == b'\n').count();
            out.push(Statement {
                line,
                sql: text.trim().to_owned(),
            });
        }
    };
    while i < bytes.len() {
        match bytes[i] {
            b'\'' | b'"' => i = skip_quoted(bytes, i),
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = bytes[i..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(bytes.len(), |p| i + p + 1);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => i = skip_block_comment(bytes, i),
            b'$' => i = skip_dollar(sql, i),
            b';' => {
                push(start, i, &mut out);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    push(start, bytes.len(), &mut out);
    out
}

/// Whether text holds anything but whitespace and comments.
fn has_code(text: &str) -> bool {
    let mut rest = text.trim_start();
    loop {
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.split_once('\n').map_or("", |(_, r)| r).trim_start();
        } else if rest.starts_with("/*") {
            let end = skip_block_comment(rest.as_bytes(), 0);
            rest = rest.get(end..).unwrap_or("").trim_start();
        } else {
            return !rest.is_empty();
        }
    }
}

fn skip_quoted(bytes: &[u8], start: usize) -> usize {
    let quote = bytes[start];
    let mut i = start + 1;
    while i < bytes.len() {
        if bytes[i] == quote {
            // A doubled quote is an escaped quote, not the end.
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

fn skip_block_comment(bytes: &[u8], start: usize) -> usize {
    let mut depth = 0usize;
    let mut i = start;
    while i + 1 < bytes.len() {
        if bytes[i] == b'/' && bytes[i + 1] == b'*' {
            depth += 1;
            i += 2;
        } else if bytes[i] == b'*' && bytes[i + 1] == b'/' {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    bytes.len()
}

/// `$tag$ ... $tag$`; a `$` that does not open a tag (like `$1`) is just a character.
fn skip_dollar(sql: &str, start: usize) -> usize {
    let rest = &sql[start + 1..];
    let tag_len = rest
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
        .count();
    let is_tag = rest.as_bytes().get(tag_len) == Some(&b'$')
        && !rest.as_bytes().first().is_some_and(u8::is_ascii_digit);
    if !is_tag {
        return start + 1;
    }
    let tag = &sql[start..start + tag_len + 2];
    let body = start + tag.len();
    match sql.get(body..).and_then(|s| s.find(tag)) {
        Some(end) => body + end + tag.len(),
        None => sql.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_on_semicolons_with_their_start_lines() {
        let parts = split("create table a (x int);\n\n-- note\ninsert into a values (1);\n");
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].line, 1);
        assert_eq!(parts[1].line, 3);
        assert!(parts[1].sql.ends_with("values (1)"));
    }

    #[test]
    fn semicolons_inside_strings_bodies_and_comments_do_not_split() {
        let sql = "select 'a;b', \"c;d\";\ncreate function f() returns int as $body$ begin return 1; end $body$ language plpgsql;\n/* x; /* nested; */ y; */ select $1;";
        let parts = split(sql);
        assert_eq!(parts.len(), 3, "{parts:#?}");
        assert!(parts[1].sql.contains("return 1; end"));
    }

    #[test]
    fn a_file_of_only_comments_has_no_statements() {
        assert!(split("-- steward: no-transaction\n/* nothing */\n").is_empty());
    }
}
