//! Splitting a SQL file into statements, each with the line it starts on. Quotes,
//! quoted identifiers, escape strings (`E'it\'s'`), dollar-quoted bodies (`$fn$ ... $fn$`),
//! SQL-standard function bodies (`BEGIN ATOMIC ... END`) and both comment styles are
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
    let mut body = Body::default();
    // A statement starts at its first code, after any comments leading up to it, so its
    // line is the line a person looks for.
    let push = |from: usize, to: usize, out: &mut Vec<Statement>| {
        let text = &sql[from..to];
        if let Some(lead) = code_start(text) {
            let line = 1 + sql[..from + lead].bytes().filter(|&b| b == b'\n').count();
            out.push(Statement {
                line,
                sql: text[lead..].trim_end().to_owned(),
            });
        }
    };
    while i < bytes.len() {
        match bytes[i] {
            b'\'' | b'"' => i = skip_quoted(bytes, i, false),
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = bytes[i..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(bytes.len(), |p| i + p + 1);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => i = skip_block_comment(bytes, i),
            b'$' => i = skip_dollar(sql, i),
            b'(' => {
                body.parens += 1;
                i += 1;
            }
            b')' => {
                body.parens = body.parens.saturating_sub(1);
                i += 1;
            }
            b';' if body.depth == 0 => {
                push(start, i, &mut out);
                i += 1;
                start = i;
                body = Body::default();
            }
            b if is_word_start(b) => {
                let end = i + bytes[i..]
                    .iter()
                    .position(|&b| !is_word_byte(b))
                    .unwrap_or(bytes.len() - i);
                let word = &sql[i..end];
                i = if bytes.get(end) == Some(&b'\'') && word.eq_ignore_ascii_case("e") {
                    skip_quoted(bytes, end, true)
                } else {
                    body.word(word);
                    end
                };
            }
            _ => i += 1,
        }
    }
    push(start, bytes.len(), &mut out);
    out
}

/// Where a statement stands in a SQL-standard function body, which psql tracks the same
/// way (`psqlscan.l`): only in `CREATE [OR REPLACE] FUNCTION|PROCEDURE`, outside
/// parentheses, `BEGIN` opens a block, `CASE` inside a block opens one too (it also ends
/// with `END`), and `END` closes one. A `;` splits only at depth 0.
#[derive(Debug, Default)]
struct Body {
    /// The statement's first words, lowercased, up to four.
    lead: Vec<String>,
    parens: usize,
    depth: usize,
}

impl Body {
    fn word(&mut self, word: &str) {
        if self.lead.len() < 4 {
            self.lead.push(word.to_ascii_lowercase());
        }
        if self.parens > 0 || !self.defines_routine() {
            return;
        }
        let opens = word.eq_ignore_ascii_case("begin")
            || (word.eq_ignore_ascii_case("case") && self.depth > 0);
        if opens {
            self.depth += 1;
        } else if word.eq_ignore_ascii_case("end") {
            self.depth = self.depth.saturating_sub(1);
        }
    }

    fn defines_routine(&self) -> bool {
        let lead: Vec<&str> = self.lead.iter().map(String::as_str).collect();
        matches!(
            lead.as_slice(),
            ["create", "function" | "procedure", ..]
                | ["create", "or", "replace", "function" | "procedure", ..]
        )
    }
}

fn is_word_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_word_byte(b: u8) -> bool {
    is_word_start(b) || b.is_ascii_digit() || b == b'$'
}

/// Where the first code in `text` starts, past whitespace and comments; `None` when
/// there is none.
fn code_start(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = 0;
    loop {
        while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        if text[i..].starts_with("--") {
            i = text[i..].find('\n').map_or(text.len(), |p| i + p + 1);
        } else if text[i..].starts_with("/*") {
            i = skip_block_comment(bytes, i);
        } else {
            return (i < text.len()).then_some(i);
        }
    }
}

/// A quoted string or identifier; with `escapes` (an `E'...'` string) a backslash escapes
/// the next byte, so `E'it\'s'` is one string.
fn skip_quoted(bytes: &[u8], start: usize, escapes: bool) -> usize {
    let quote = bytes[start];
    let mut i = start + 1;
    while i < bytes.len() {
        if escapes && bytes[i] == b'\\' {
            i += 2;
            continue;
        }
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
        assert_eq!(
            parts[1].line, 4,
            "the statement's own line, not its comment's"
        );
        assert_eq!(parts[1].sql, "insert into a values (1)");
    }

    #[test]
    fn semicolons_inside_strings_bodies_and_comments_do_not_split() {
        let sql = "select 'a;b', \"c;d\";\ncreate function f() returns int as $body$ begin return 1; end $body$ language plpgsql;\n/* x; /* nested; */ y; */ select $1;";
        let parts = split(sql);
        assert_eq!(parts.len(), 3, "{parts:#?}");
        assert!(parts[1].sql.contains("return 1; end"));
    }

    #[test]
    fn a_sql_standard_function_body_is_one_statement() {
        let sql = "create or replace procedure p() language sql\nbegin atomic\n  insert into t values (case when true then 1 end);\n  insert into t values (2);\nend;\nselect 1;";
        let parts = split(sql);
        assert_eq!(parts.len(), 2, "{parts:#?}");
        assert!(parts[0].sql.ends_with("end"), "{parts:#?}");
        assert_eq!(parts[1].line, 6);
    }

    #[test]
    fn begin_and_end_outside_a_routine_definition_do_not_hold_a_statement_open() {
        let parts = split("begin;\ncreate table t (a int);\nend;\n");
        let texts: Vec<&str> = parts.iter().map(|p| p.sql.as_str()).collect();
        assert_eq!(texts, ["begin", "create table t (a int)", "end"]);
    }

    #[test]
    fn an_escape_string_with_an_escaped_quote_does_not_split() {
        let parts = split("insert into t values (E'it\\'s; fine');\nselect 2;");
        assert_eq!(parts.len(), 2, "{parts:#?}");
        assert_eq!(parts[1].line, 2);
    }

    #[test]
    fn a_file_of_only_comments_has_no_statements() {
        assert!(split("-- steward: no-transaction\n/* nothing */\n").is_empty());
    }
}
