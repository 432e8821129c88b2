//! How an error reads in a log line, an error answer or a report field.

/// The error and its sources on one line (`cannot read x: permission
/// denied`): the top-level message alone hides the useful part.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("cannot read /etc/x")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn every_source_follows_on_one_line() {
        let e = Outer(std::io::Error::other("permission denied"));
        assert_eq!(error_chain(&e), "cannot read /etc/x: permission denied");
    }
}
