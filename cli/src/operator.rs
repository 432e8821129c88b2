//! Who runs hostctl, as hostd records it in its ledger and shows it to
//! whoever finds a host's operations lock held.

/// `$USER@hostname`, falling back to the password database and the uid.
pub fn requested_by() -> String {
    let uid = nix::unistd::getuid();
    let user = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| {
            nix::unistd::User::from_uid(uid)
                .ok()
                .flatten()
                .map(|u| u.name)
        })
        .unwrap_or_else(|| format!("uid{uid}"));
    let machine = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into());
    format!("{user}@{machine}")
}
