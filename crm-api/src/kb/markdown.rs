//! Article markdown → sanitised HTML, plain text (for search and meta descriptions) and FAQ pairs
//! (for FAQPage JSON-LD).
//!
//! Sanitising works on the parser's events rather than on HTML afterwards: raw HTML in the
//! markdown (blocks and inline) becomes escaped text, and a link or image whose URL is not
//! http(s), mailto or relative loses its URL (the text stays). Every tag in the output is then one
//! pulldown-cmark's renderer wrote for a markdown construct, with attributes it escaped, so there
//! is nothing left for an HTML sanitiser to remove — and no HTML parser in the build.

use pulldown_cmark::{html, Event, HeadingLevel, Options, Parser, Tag, TagEnd};

pub struct Rendered {
    pub html: String,
    /// The text without markup, blocks separated by newlines.
    pub text: String,
    /// (question, answer) for each H2/H3 heading ending in `?` and the text up to the next heading.
    pub faq: Vec<(String, String)>,
}

/// Whether a link or image URL may be kept: http, https, mailto, or no scheme (relative,
/// fragment, query). Browsers ignore ASCII whitespace and control characters inside a scheme
/// (`java\tscript:`), so those are removed before looking.
pub fn safe_url(url: &str) -> bool {
    let cleaned: String = url.chars().filter(|c| !c.is_ascii_whitespace() && !c.is_ascii_control()).collect::<String>().to_ascii_lowercase();
    match cleaned.find([':', '/', '?', '#']) {
        Some(i) if cleaned.as_bytes()[i] == b':' => matches!(&cleaned[..i], "http" | "https" | "mailto"),
        _ => true,
    }
}

struct Faq {
    pairs: Vec<(String, String)>,
    /// Some while inside an H2/H3 heading: its text so far.
    heading: Option<String>,
    /// Some while collecting the answer to the last question.
    answer: Option<String>,
}

impl Faq {
    fn text(&mut self, text: &str) {
        if let Some(heading) = &mut self.heading {
            heading.push_str(text);
        } else if let Some(answer) = &mut self.answer {
            answer.push_str(text);
        }
    }

    fn finish_answer(&mut self) {
        if let Some(answer) = self.answer.take() {
            let answer = collapse(&answer);
            match self.pairs.last_mut() {
                Some(last) if !answer.is_empty() && last.1.is_empty() => last.1 = answer,
                _ => {}
            }
        }
    }
}

fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub fn render(markdown: &str) -> Rendered {
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let mut text = String::new();
    let mut faq = Faq { pairs: Vec::new(), heading: None, answer: None };
    // One entry per open link or image: whether its start tag was dropped (unsafe URL).
    let mut dropped: Vec<bool> = Vec::new();
    let mut events = Vec::new();
    for event in Parser::new_ext(markdown, options) {
        let event = match event {
            Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
            Event::Start(Tag::Link { link_type, dest_url, title, id }) => {
                let unsafe_url = !safe_url(&dest_url);
                dropped.push(unsafe_url);
                if unsafe_url {
                    continue;
                }
                Event::Start(Tag::Link { link_type, dest_url, title, id })
            }
            Event::Start(Tag::Image { link_type, dest_url, title, id }) => {
                let unsafe_url = !safe_url(&dest_url);
                dropped.push(unsafe_url);
                if unsafe_url {
                    continue;
                }
                Event::Start(Tag::Image { link_type, dest_url, title, id })
            }
            Event::End(end @ (TagEnd::Link | TagEnd::Image)) => {
                if dropped.pop().unwrap_or(false) {
                    continue;
                }
                Event::End(end)
            }
            other => other,
        };
        match &event {
            Event::Text(t) | Event::Code(t) => {
                text.push_str(t);
                faq.text(t);
            }
            Event::SoftBreak | Event::HardBreak => {
                text.push(' ');
                faq.text(" ");
            }
            Event::Start(Tag::Heading { level, .. }) => {
                faq.finish_answer();
                if matches!(level, HeadingLevel::H2 | HeadingLevel::H3) {
                    faq.heading = Some(String::new());
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some(heading) = faq.heading.take() {
                    let question = collapse(&heading);
                    if question.ends_with('?') {
                        faq.pairs.push((question, String::new()));
                        faq.answer = Some(String::new());
                    }
                }
                text.push('\n');
            }
            Event::End(TagEnd::Paragraph | TagEnd::Item | TagEnd::CodeBlock | TagEnd::TableCell | TagEnd::BlockQuote(_)) => {
                text.push('\n');
                faq.text(" ");
            }
            _ => {}
        }
        events.push(event);
    }
    faq.finish_answer();
    let mut out = String::with_capacity(markdown.len() * 3 / 2);
    html::push_html(&mut out, events.into_iter());
    let text = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("\n");
    Rendered { html: out, text, faq: faq.pairs.into_iter().filter(|(_, a)| !a.is_empty()).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_handlers_and_raw_html_never_survive() {
        let hostile = r#"<script>alert(1)</script>

<img src=x onerror="alert(2)">

Text with <b onclick="x()">inline html</b> and <iframe src="//evil"></iframe>.

[click](javascript:alert(3)) [tabbed](java	script:alert(4)) [entity](javascript&#58;alert(5)) [data](data:text/html;base64,PHNjcmlwdD4=)
![img](javascript:alert(6)) [vb](VBScript:msgbox) [ok](https://example.com/a?b=1&c="2") [rel](/help/x) [mail](mailto:a@b.c) [frag](#top)
"#;
        let out = render(hostile).html;
        let lower = out.to_lowercase();
        for bad in ["javascript:", "data:text", "vbscript:"] {
            assert!(!lower.contains(bad), "{bad} in {out}");
        }
        assert_only_markdown_tags(&out);
        assert!(out.contains("&lt;script&gt;"), "raw html is shown as text: {out}");
        assert!(out.contains(r#"<a href="https://example.com/a?b=1&amp;c=%222%22">ok</a>"#), "{out}");
        for kept in [r#"<a href="/help/x">rel</a>"#, r#"<a href="mailto:a@b.c">mail</a>"#, r##"<a href="#top">frag</a>"##] {
            assert!(out.contains(kept), "{kept} in {out}");
        }
        assert!(out.contains("<p>click ") && out.contains(" entity data\nimg vb "), "an unsafe link or image keeps its text: {out}");
    }

    /// Every tag in `html` is one markdown makes, and no attribute but href/src/alt/title/type/
    /// checked/disabled/start/style(align) appears inside a tag.
    fn assert_only_markdown_tags(html: &str) {
        const TAGS: &[&str] = &[
            "p", "a", "img", "strong", "em", "code", "pre", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "table", "thead", "tbody",
            "tr", "th", "td", "del", "input", "blockquote", "hr", "br",
        ];
        for (i, _) in html.match_indices('<') {
            let rest = &html[i + 1..];
            let tag_end = rest.find('>').expect("tags close");
            let tag = &rest[..tag_end];
            let name: String = tag.trim_start_matches('/').chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
            assert!(TAGS.contains(&name.as_str()), "tag <{tag}> in {html}");
            for attribute in tag.split_whitespace().skip(1) {
                let key = attribute.split('=').next().unwrap_or("").trim_end_matches('/');
                assert!(["href", "src", "alt", "title", "type", "checked", "disabled", "start", "style", ""].contains(&key), "attribute {attribute} in <{tag}>");
            }
        }
    }

    #[test]
    fn markdown_constructs_render() {
        let md = "# Title\n\nSome **bold** and `code <x>`.\n\n| a | b |\n| - | - |\n| 1 | 2 |\n\n```\nlet x = 1 < 2;\n```\n\n- [x] done\n- ~~old~~\n";
        let r = render(md);
        for part in ["<h1>Title</h1>", "<strong>bold</strong>", "<code>code &lt;x&gt;</code>", "<table>", "<td>2</td>", "let x = 1 &lt; 2;", "<del>old</del>", "checkbox"] {
            assert!(r.html.contains(part), "{part} in {}", r.html);
        }
        assert_eq!(r.text, "Title\nSome bold and code <x>.\na\nb\n1\n2\nlet x = 1 < 2;\ndone\nold");
    }

    #[test]
    fn faq_pairs_come_from_question_headings() {
        let md = "# Guide\n\nIntro.\n\n## Do you support SSO?\n\nYes, SAML and OIDC.\n\nWith **Okta** too.\n\n## Setup\n\nSteps.\n\n### What does it cost?\n\nNothing extra.\n\n## Empty?\n\n## Last\n";
        let r = render(md);
        assert_eq!(
            r.faq,
            [("Do you support SSO?".to_owned(), "Yes, SAML and OIDC. With Okta too.".to_owned()), ("What does it cost?".to_owned(), "Nothing extra.".to_owned())]
        );
        assert!(render("no headings").faq.is_empty());
    }

    #[test]
    fn url_schemes() {
        for ok in ["https://a.b", "http://a", "mailto:x@y", "/rel", "rel/x:y", "?q=1", "#a", "", "HTTPS://A"] {
            assert!(safe_url(ok), "{ok}");
        }
        for bad in ["javascript:x", " JavaScript:x", "java\nscript:x", "data:x", "vbscript:x", "file:///etc", "\u{1}javascript:x"] {
            assert!(!safe_url(bad), "{bad:?}");
        }
    }
}
