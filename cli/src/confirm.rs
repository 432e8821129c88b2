//! The go-ahead for a change that cannot be taken back by hostctl alone
//! (`restore`, `apply`): `--yes`, or a person at the terminal who answers
//! yes; nobody to ask (a script, a pipe) means no.

use std::io::Write;

/// How the go-ahead is obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmation {
    /// --yes.
    Given,
    /// A person at the terminal decides.
    Ask,
    /// Nobody to ask: the command needs --yes.
    Refused,
}

pub fn confirmation(yes: bool, stdin_tty: bool) -> Confirmation {
    match (yes, stdin_tty) {
        (true, _) => Confirmation::Given,
        (false, true) => Confirmation::Ask,
        (false, false) => Confirmation::Refused,
    }
}

/// Only an explicit yes: the default of a destructive question is no.
pub fn accepted(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// Asks on stderr and reads stdin. Blocking is fine: nothing else runs
/// while the operator thinks, and no connection is open.
pub fn ask_on_terminal(question: &str) -> std::io::Result<String> {
    let mut err = anstream::stderr();
    write!(err, "{question} ")?;
    err.flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_yes_or_a_terminal_lets_a_change_go_ahead() {
        assert_eq!(confirmation(true, false), Confirmation::Given);
        assert_eq!(confirmation(true, true), Confirmation::Given);
        assert_eq!(confirmation(false, true), Confirmation::Ask);
        assert_eq!(confirmation(false, false), Confirmation::Refused);
        for yes in ["y", "Y\n", "yes", " YES \n"] {
            assert!(accepted(yes), "{yes:?}");
        }
        for no in ["", "\n", "n", "no", "yess", "y y", "ok"] {
            assert!(!accepted(no), "{no:?}");
        }
    }
}
