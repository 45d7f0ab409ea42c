//! `crm import kb DIR`: a folder of markdown files becomes a site's articles.
//!
//! Each `*.md` file (found recursively, at most [`MAX_FILES`]) may start with front matter:
//!
//! ```text
//! ---
//! title: Reset your password
//! slug: reset-password
//! category: account
//! tags: [login, security]
//! status: published
//! ---
//! ```
//!
//! Defaults: the title is the first `# ` heading (which then leaves the body, as the page shows
//! the title itself), the slug is the file name's, the category the parent folder's, the status
//! published. Every file is checked before anything is written: one bad file imports nothing.
//! Articles are matched by slug; an unchanged one is skipped, a changed one gets a new version.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crm_schemas::{slugify, valid_slug, Article, ArticleStatus};
use crm_store::Store;

use super::{new_article, save_article, KbRuntime};

/// Most markdown files one import takes.
pub const MAX_FILES: usize = 10_000;

/// One file's article fields.
#[derive(Clone, Debug, PartialEq)]
pub struct MarkdownArticle {
    pub slug: String,
    pub title: String,
    pub category: Option<String>,
    pub tags: Vec<String>,
    pub status: ArticleStatus,
    pub body_md: String,
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KbImportReport {
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
}

fn unquote(value: &str) -> &str {
    let v = value.trim();
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return &v[1..v.len() - 1];
        }
    }
    v
}

/// Parses one file; `relative` is its path under the imported folder (for the defaults).
pub fn parse_markdown(relative: &Path, text: &str) -> Result<MarkdownArticle, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text).replace("\r\n", "\n");
    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    let mut body = text.as_str();
    if let Some(rest) = text.strip_prefix("---\n") {
        let end = rest.find("\n---\n").map(|i| (i, i + 5)).or_else(|| rest.strip_suffix("\n---").map(|r| (r.len(), rest.len()))).ok_or("front matter opened with --- is not closed")?;
        for (n, line) in rest[..end.0].lines().enumerate() {
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let (key, value) = line.split_once(':').ok_or_else(|| format!("front matter line {}: expected `key: value`", n + 2))?;
            let key = key.trim().to_ascii_lowercase();
            if !matches!(key.as_str(), "title" | "slug" | "category" | "tags" | "status") {
                return Err(format!("front matter line {}: unknown key `{key}` (title, slug, category, tags, status)", n + 2));
            }
            if fields.insert(key.clone(), value.trim().to_owned()).is_some() {
                return Err(format!("front matter: `{key}` appears twice"));
            }
        }
        body = &rest[end.1.min(rest.len())..];
    }
    let mut body = body.trim_start_matches('\n').to_owned();
    let title = match fields.get("title") {
        Some(t) => unquote(t).to_owned(),
        None => {
            let first = body.lines().next().unwrap_or("");
            let Some(heading) = first.strip_prefix("# ") else {
                return Err("no title: add `title:` front matter or start with a `# ` heading".into());
            };
            let heading = heading.trim().to_owned();
            body = body[first.len()..].trim_start_matches('\n').to_owned();
            heading
        }
    };
    let stem = relative.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let slug = match fields.get("slug") {
        Some(s) => unquote(s).to_owned(),
        None => slugify(&stem),
    };
    let category = match fields.get("category") {
        Some(c) => Some(unquote(c).to_owned()).filter(|c| !c.is_empty()),
        None => relative.parent().and_then(|p| p.file_name()).map(|p| slugify(&p.to_string_lossy())).filter(|c| !c.is_empty()),
    };
    let tags = match fields.get("tags") {
        None => Vec::new(),
        Some(t) => {
            let inner = t.trim().strip_prefix('[').and_then(|t| t.strip_suffix(']')).unwrap_or(t);
            inner.split(',').map(|t| unquote(t).to_owned()).filter(|t| !t.is_empty()).collect()
        }
    };
    let status = match fields.get("status").map(|s| unquote(s)) {
        None | Some("published") => ArticleStatus::Published,
        Some("draft") => ArticleStatus::Draft,
        Some(other) => return Err(format!("status `{other}` is not draft or published")),
    };
    if !valid_slug(&slug) {
        return Err(format!("slug `{slug}` is not 1–100 of lowercase letters, digits and single hyphens"));
    }
    Ok(MarkdownArticle { slug, title, category, tags, status, body_md: body })
}

fn walk(dir: &Path, root: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let mut entries: Vec<_> = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?.collect::<Result<_, _>>().map_err(|e| format!("{}: {e}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| format!("{}: {e}", path.display()))?;
        if kind.is_dir() && !entry.file_name().to_string_lossy().starts_with('.') {
            walk(&path, root, out)?;
        } else if kind.is_file() && path.extension().is_some_and(|e| e.eq_ignore_ascii_case("md")) {
            out.push(path.strip_prefix(root).map(Path::to_path_buf).unwrap_or(path));
            if out.len() > MAX_FILES {
                return Err(format!("more than {MAX_FILES} markdown files"));
            }
        }
    }
    Ok(())
}

/// Reads and checks every file of `dir`: the articles by relative path, or every problem.
pub fn read_dir(site_id: &str, dir: &Path) -> Result<Vec<(PathBuf, MarkdownArticle)>, Vec<String>> {
    let mut files = Vec::new();
    walk(dir, dir, &mut files).map_err(|e| vec![e])?;
    if files.is_empty() {
        return Err(vec![format!("{}: no .md files", dir.display())]);
    }
    let mut problems = Vec::new();
    let mut articles = Vec::new();
    let mut slugs: BTreeMap<String, PathBuf> = BTreeMap::new();
    for relative in files {
        let full = dir.join(&relative);
        let parsed = std::fs::read(&full)
            .map_err(|e| e.to_string())
            .and_then(|bytes| String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_owned()))
            .and_then(|text| parse_markdown(&relative, &text));
        match parsed {
            Ok(article) => {
                let check = new_article(site_id, Some(article.slug.clone()), &article.title, article.body_md.clone(), article.category.clone(), article.tags.clone(), article.status);
                for problem in check.check() {
                    problems.push(format!("{}: {}: {}", relative.display(), problem.field, problem.message));
                }
                if let Some(first) = slugs.insert(article.slug.clone(), relative.clone()) {
                    problems.push(format!("{}: slug `{}` is also {}", relative.display(), article.slug, first.display()));
                }
                articles.push((relative, article));
            }
            Err(e) => problems.push(format!("{}: {e}", relative.display())),
        }
    }
    if problems.is_empty() {
        Ok(articles)
    } else {
        Err(problems)
    }
}

fn unchanged(existing: &Article, new: &MarkdownArticle) -> bool {
    existing.title == new.title && existing.body_md == new.body_md && existing.category == new.category && existing.tags == new.tags && existing.status == new.status
}

/// Writes checked articles to a site, matched by slug (deleted articles are not matched).
pub async fn import_articles(store: &Arc<dyn Store>, kb: &KbRuntime, site_id: &str, articles: Vec<MarkdownArticle>) -> Result<KbImportReport, crate::ApiError> {
    let existing: BTreeMap<String, Article> = store.articles(site_id).await?.into_iter().filter(|a| a.deleted_at_ms.is_none()).map(|a| (a.slug.clone(), a)).collect();
    let mut report = KbImportReport::default();
    for new in articles {
        match existing.get(&new.slug) {
            Some(old) if unchanged(old, &new) => report.unchanged += 1,
            Some(old) => {
                let mut article = old.clone();
                article.title = new.title;
                article.body_md = new.body_md;
                article.category = new.category;
                article.tags = new.tags;
                article.status = new.status;
                save_article(store, kb, article, "import").await?;
                report.updated += 1;
            }
            None => {
                let article = new_article(site_id, Some(new.slug), &new.title, new.body_md, new.category, new.tags, new.status);
                save_article(store, kb, article, "import").await?;
                report.created += 1;
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(path: &str, text: &str) -> Result<MarkdownArticle, String> {
        parse_markdown(Path::new(path), text)
    }

    #[test]
    fn front_matter_and_defaults() {
        let a = parse("account/Reset Password.md", "---\ntitle: \"Reset: your password\"\ntags: [login, 'security']\nstatus: draft\n---\nBody text.\n").unwrap();
        assert_eq!(
            a,
            MarkdownArticle {
                slug: "reset-password".into(),
                title: "Reset: your password".into(),
                category: Some("account".into()),
                tags: vec!["login".into(), "security".into()],
                status: ArticleStatus::Draft,
                body_md: "Body text.\n".into()
            }
        );
        let b = parse("sso.md", "# Single sign-on\n\nUse SAML.").unwrap();
        assert_eq!((b.title.as_str(), b.slug.as_str(), b.category, b.status, b.body_md.as_str()), ("Single sign-on", "sso", None, ArticleStatus::Published, "Use SAML."));
        let c = parse("x.md", "\u{feff}---\r\nslug: custom\r\ncategory: \r\n---\r\n# T\r\nB").unwrap();
        assert_eq!((c.slug.as_str(), c.category, c.title.as_str()), ("custom", None, "T"));
    }

    #[test]
    fn bad_files_are_named_errors() {
        for (text, needle) in [
            ("---\ntitle: T\n", "not closed"),
            ("---\ntitel: T\n---\nx", "unknown key `titel`"),
            ("---\ntitle T\n---\nx", "expected `key: value`"),
            ("---\ntitle: a\ntitle: b\n---\nx", "appears twice"),
            ("no heading", "no title"),
            ("---\ntitle: T\nstatus: archived\n---\n", "not draft or published"),
            ("---\ntitle: T\nslug: Bad Slug\n---\n", "slug `Bad Slug`"),
        ] {
            let err = parse("a.md", text).unwrap_err();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn a_folder_is_checked_whole() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("billing")).unwrap();
        std::fs::create_dir_all(dir.path().join(".git")).unwrap();
        std::fs::write(dir.path().join("billing/invoices.md"), "# Invoices\nPDF.").unwrap();
        std::fs::write(dir.path().join("sso.md"), "# SSO\nSAML.").unwrap();
        std::fs::write(dir.path().join(".git/notes.md"), "ignored").unwrap();
        std::fs::write(dir.path().join("readme.txt"), "ignored").unwrap();
        let articles = read_dir("acme", dir.path()).unwrap();
        let seen: Vec<_> = articles.iter().map(|(p, a)| (p.display().to_string(), a.category.clone())).collect();
        assert_eq!(seen, [("billing/invoices.md".to_owned(), Some("billing".to_owned())), ("sso.md".to_owned(), None)]);
        std::fs::write(dir.path().join("billing/sso.md"), "# Again\nx").unwrap();
        std::fs::write(dir.path().join("bad.md"), [0xff, 0xfe]).unwrap();
        let problems = read_dir("acme", dir.path()).unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("bad.md: not UTF-8") && problems[1].contains("slug `sso` is also billing/sso.md"), "{problems:?}");
        assert!(read_dir("acme", &dir.path().join("billing/invoices.md")).is_err());
    }
}
