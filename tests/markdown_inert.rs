//! Text steward did not write (migration SQL, file names, lint findings) stays inert in
//! the plan's markdown: a CommonMark/GFM parser finds only the elements steward meant.

mod common;

use std::fs;

use common::fleet::World;
use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag};

/// A comment that closes a naive fence, then markdown that must not render.
const HOSTILE: &str = "```\n# Pwned heading\n@mallory ![pixel](https://evil.example/p.png) [click](https://evil.example) <img src=x onerror=alert(1)> <script>x</script> **bold** ~~gone~~\n````";

const ALLOWED_HTML: &[&str] = &[
    "<!-- steward:plan -->",
    "<details>",
    "</details>",
    "<summary>",
    "</summary>",
    "<code>",
    "</code>",
    "<br>",
];

/// The tags in a piece of raw HTML (the text between them is escaped, so holds no `<`).
fn tags(html: &str) -> Vec<String> {
    html.split('<')
        .skip(1)
        .map(|rest| format!("<{}>", rest.split_once('>').map_or(rest, |(tag, _)| tag)))
        .collect()
}

fn hostile_fleet(world: &World) {
    let migrations = world.path().join("migrations");
    common::copy_dir(&common::repo_root().join("migrations"), &migrations);
    fs::write(
        migrations.join("2099_01_01_001_hostile.up.sql"),
        format!(
            "-- {HOSTILE}\ncreate table hostile (id int);\n/* {HOSTILE} */\ndrop table \"{}\";\n",
            HOSTILE.replace(['\n', '"'], " ")
        ),
    )
    .expect("write");
    fs::write(
        migrations.join("2099_01_01_001_hostile.down.sql"),
        "drop table hostile;\n",
    )
    .expect("write");
    world.write_fleet(&migrations, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_migration_text_renders_inert_in_the_plan_markdown() {
    let world = World::new().await;
    hostile_fleet(&world);
    let adopted = world.steward(&["adopt", "shop"]);
    common::assert_exit(&adopted, 0);
    world.write_client(common::fleet::SHA1, "2099_01_01_001", "info", "");
    let out = world.steward(&["plan", "--format", "markdown"]);
    world.assert_no_secret(&out);
    let markdown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        markdown.contains("2099_01_01_001_hostile.up.sql"),
        "the hostile migration is in the plan:\n{markdown}"
    );

    let mut headings = 0;
    let mut code_text = String::new();
    let mut in_code_block = false;
    let options =
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    for event in Parser::new_ext(&markdown, options) {
        match &event {
            Event::Start(Tag::Heading { level, .. }) => {
                assert_eq!(
                    *level,
                    HeadingLevel::H3,
                    "only steward's own heading:\n{markdown}"
                );
                headings += 1;
            }
            Event::Start(Tag::Link { .. } | Tag::Image { .. }) => {
                panic!("a link or image rendered from hostile text: {event:?}\n{markdown}")
            }
            Event::Start(Tag::Emphasis | Tag::Strikethrough) => {
                panic!("hostile text rendered as markup: {event:?}\n{markdown}")
            }
            Event::Start(Tag::CodeBlock(_)) => in_code_block = true,
            Event::End(pulldown_cmark::TagEnd::CodeBlock) => in_code_block = false,
            Event::Text(text) if in_code_block => code_text.push_str(text),
            Event::Html(html) | Event::InlineHtml(html) => {
                for tag in tags(html) {
                    assert!(
                        ALLOWED_HTML.contains(&tag.as_str()),
                        "raw HTML that steward did not write: {tag:?} in {html:?}\n{markdown}"
                    );
                }
            }
            _ => {}
        }
    }
    assert_eq!(headings, 1, "exactly one heading:\n{markdown}");
    assert!(
        code_text.contains("# Pwned heading") && code_text.contains("<img src=x"),
        "the hostile SQL is shown whole, inside its code block:\n{markdown}"
    );
}
