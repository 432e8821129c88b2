//! `/proc/self/mountinfo`, read by hostd (a restore refuses to rename a
//! mount point) and by hostctl's sandbox (unmounting what it mounted).

use std::path::PathBuf;

/// The mount points of this process's mount namespace, in table order;
/// empty when the table cannot be read.
pub fn mount_points() -> Vec<PathBuf> {
    parse(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
}

/// The fifth field of each line, unescaped.
pub fn parse(table: &str) -> Vec<PathBuf> {
    table
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape(m)))
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(c) => {
                out.push(char::from(c));
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_unescaped() {
        let table = "22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/root rw\n\
                     95 22 0:50 / /data/git\\040repos rw shared:40 - nfs4 fs:/ rw\n";
        assert_eq!(
            parse(table),
            [PathBuf::from("/"), PathBuf::from("/data/git repos")]
        );
        assert_eq!(unescape("a\\134b\\"), "a\\b\\");
    }
}
