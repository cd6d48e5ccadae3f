//! Database URLs as roles log them.

/// A database URL for logs: without its password.
pub fn redact(database: &str) -> String {
    match (database.find("://"), database.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &database[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => {
                    format!("{}{user}:***{}", &database[..scheme + 3], &database[at..])
                }
                None => database.to_string(),
            }
        }
        _ => database.to_string(),
    }
}
