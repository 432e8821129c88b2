//! Secret values out of lines before they leave the host: every value of
//! the set hostd holds is replaced by `[REDACTED]`, wherever it appears in
//! a line (a password in a connection string, a token echoed by an app).

use aho_corasick::{AhoCorasick, MatchKind};

use crate::secrets::SecretValue;

pub const MARK: &str = "[REDACTED]";
/// Values shorter than this are not looked for: a 3-character value
/// would blank ordinary words, and is not a secret worth the name. The
/// shipper logs (by name count only) that some were skipped.
pub const SHORTEST: usize = 6;

#[derive(Default)]
pub struct Redactor {
    matcher: Option<AhoCorasick>,
    /// Values too short to look for.
    pub skipped: usize,
}

impl Redactor {
    pub fn new<'a>(values: impl IntoIterator<Item = &'a SecretValue>) -> Self {
        let (mut long, mut skipped) = (Vec::new(), 0);
        for v in values {
            if v.expose().len() >= SHORTEST {
                long.push(v.expose());
            } else if !v.expose().is_empty() {
                skipped += 1;
            }
        }
        // Leftmost-longest: a value containing another is replaced whole.
        let matcher = (!long.is_empty())
            .then(|| {
                AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(&long)
                    .ok()
            })
            .flatten();
        Self { matcher, skipped }
    }

    /// `line` with every known value replaced; untouched when none is in it.
    pub fn redact(&self, line: &mut String) {
        let Some(m) = &self.matcher else { return };
        if m.is_match(line.as_str()) {
            let mut out = String::with_capacity(line.len());
            m.replace_all_with(line, &mut out, |_, _, dst| {
                dst.push_str(MARK);
                true
            });
            *line = out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_value_is_replaced_and_short_ones_are_counted() {
        let values = [
            SecretValue::new("hunter2-long".into()),
            SecretValue::new("hunter2-longer".into()),
            SecretValue::new("abc".into()),
        ];
        let r = Redactor::new(&values);
        let mut line =
            "url=postgres://u:hunter2-longer@h/db and hunter2-long twice hunter2-long".to_owned();
        r.redact(&mut line);
        assert_eq!(
            line,
            "url=postgres://u:[REDACTED]@h/db and [REDACTED] twice [REDACTED]"
        );
        let mut plain = "abc is not looked for".to_owned();
        r.redact(&mut plain);
        assert_eq!(plain, "abc is not looked for");
        assert_eq!(r.skipped, 1);
        let mut none = "x".to_owned();
        Redactor::default().redact(&mut none);
        assert_eq!(none, "x");
    }
}
