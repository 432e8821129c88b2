//! Where in a TOML file an error points, for the messages of both config
//! files (hostd.toml, hostctl.toml): the parser gives a byte span, the
//! operator wants the dotted key.

/// The dotted key of the key token at `span` (`ssh.user` for `user` under
/// `[ssh]`), when the span covers a bare or quoted key.
pub fn key_at(text: &str, span: std::ops::Range<usize>) -> Option<String> {
    let token = text.get(span.clone())?.trim().trim_matches('"');
    if token.is_empty() || token.contains(['\n', '=', '[', ']']) {
        return None;
    }
    let before = text.get(..span.start)?;
    let table = before.lines().rev().find_map(|line| {
        let line = line.trim();
        let inner = line.strip_prefix('[')?.split(']').next()?;
        Some(inner.trim_start_matches('[').trim().to_owned())
    });
    Some(match table {
        Some(t) if !t.is_empty() => format!("{t}.{token}"),
        _ => token.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_named_with_its_table() {
        let text = "top = 1\n[ssh]\nuser = \"a\"\nuser = \"b\"\n";
        let at = text.rfind("user").unwrap_or_default();
        assert_eq!(key_at(text, at..at + 4).as_deref(), Some("ssh.user"));
        assert_eq!(key_at(text, 0..3).as_deref(), Some("top"));
        assert_eq!(key_at(text, 0..text.len()), None);
    }
}
