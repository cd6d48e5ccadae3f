//! Server-rendered HTML: every value a miner, a proxy or the mint controls (user identities,
//! vendor strings, quote ids, a key typed into a URL) goes through [`escape`] before it is put
//! into a page.

use std::fmt::Write;

/// `text` with `& < > " '` replaced by entities: safe in element content and in quoted
/// attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// At most `max` characters of `text` (an ellipsis marks a cut), escaped.
pub fn escape_short(text: &str, max: usize) -> String {
    let mut short: String = text.chars().take(max).collect();
    if text.chars().nth(max).is_some() {
        short.push('…');
    }
    escape(&short)
}

/// A table: `head` cells (already HTML) and rows of cells (already HTML); a cell whose text
/// starts with `num:` is right-aligned (the prefix is dropped).
pub fn table(id: &str, head: &[&str], rows: &[Vec<String>], empty: &str) -> String {
    let mut out = format!(r#"<table id="{}">"#, escape(id));
    if rows.is_empty() {
        let _ = write!(
            out,
            r#"<tr><td class="empty">{}</td></tr></table>"#,
            escape(empty)
        );
        return out;
    }
    out.push_str("<tr>");
    for h in head {
        match h.strip_prefix("num:") {
            Some(h) => {
                let _ = write!(out, r#"<th class="num">{h}</th>"#);
            }
            None => {
                let _ = write!(out, "<th>{h}</th>");
            }
        }
    }
    out.push_str("</tr>");
    for row in rows {
        out.push_str("<tr>");
        for (cell, h) in row.iter().zip(head) {
            if h.starts_with("num:") {
                let _ = write!(out, r#"<td class="num">{cell}</td>"#);
            } else {
                let _ = write!(out, "<td>{cell}</td>");
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped() {
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert_eq!(escape("rig.1"), "rig.1");
        assert_eq!(escape_short("<abcdef", 3), "&lt;ab…");
        assert_eq!(escape_short("abc", 3), "abc");
    }

    #[test]
    fn tables_align_numbers_and_say_when_empty() {
        let t = table(
            "t",
            &["name", "num:n"],
            &[vec!["a".into(), "1".into()]],
            "none",
        );
        assert_eq!(
            t,
            r#"<table id="t"><tr><th>name</th><th class="num">n</th></tr><tr><td>a</td><td class="num">1</td></tr></table>"#
        );
        assert_eq!(
            table("t", &["x"], &[], "none <yet>"),
            r#"<table id="t"><tr><td class="empty">none &lt;yet&gt;</td></tr></table>"#
        );
    }
}
