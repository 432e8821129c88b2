//! Connection strings hostd composes from the wired passwords, so an app
//! reads one credential (`database_url`, `redis_url`) instead of assembling
//! URLs from raw passwords itself. Passwords are percent-encoded, which
//! every URL parser the apps use (libpq, tokio-postgres, redis-rs, Go's
//! net/url, Node's URL) decodes.

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use crate::config::split_redis_address;

pub const DATABASE_URL: &str = "database_url";
pub const REDIS_URL: &str = "redis_url";

/// Where app services reach PostgreSQL with a password: TCP on loopback,
/// which Debian's and Amazon Linux's pg_hba.conf authenticate by SCRAM.
/// Without a password they use the local socket and peer authentication.
pub const POSTGRES_TCP: &str = "127.0.0.1:5432";
pub const POSTGRES_SOCKET_DIR: &str = "/run/postgresql";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ComposeError {
    #[error("{}", crate::config::REDIS_ADDRESS_RULE)]
    RedisAddress,
}

/// `postgresql://ROLE:PASSWORD@127.0.0.1:5432/DB` with a password, else
/// `postgresql://ROLE@%2Frun%2Fpostgresql/DB` (peer authentication). The
/// role and database share the name (`services.*.database`).
pub fn database_url(name: &str, password: Option<&str>) -> String {
    match password {
        Some(pw) => format!(
            "postgresql://{name}:{}@{POSTGRES_TCP}/{name}",
            utf8_percent_encode(pw, NON_ALPHANUMERIC)
        ),
        None => format!(
            "postgresql://{name}@{}/{name}",
            utf8_percent_encode(POSTGRES_SOCKET_DIR, NON_ALPHANUMERIC)
        ),
    }
}

/// `address` with `:PASSWORD@` after the scheme.
pub fn redis_url(address: &str, password: &str) -> Result<String, ComposeError> {
    let (scheme, rest) = split_redis_address(address).ok_or(ComposeError::RedisAddress)?;
    Ok(format!(
        "{scheme}://:{}@{rest}",
        utf8_percent_encode(password, NON_ALPHANUMERIC)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const AWKWARD: &str = "p@ss:w/o?r#d% $\"'\\\n é✓";

    #[test]
    fn database_urls_round_trip_through_tokio_postgres() -> Result<(), postgres::Error> {
        let c: postgres::Config = database_url("api", Some(AWKWARD)).parse()?;
        assert_eq!(c.get_user(), Some("api"));
        assert_eq!(c.get_dbname(), Some("api"));
        assert_eq!(c.get_password(), Some(AWKWARD.as_bytes()));
        assert_eq!(c.get_ports(), [5432]);

        let peer: postgres::Config = database_url("api", None).parse()?;
        assert_eq!(peer.get_password(), None);
        assert_eq!(
            peer.get_hosts(),
            [postgres::config::Host::Unix(POSTGRES_SOCKET_DIR.into())]
        );
        Ok(())
    }

    #[test]
    fn redis_urls_round_trip_through_redis_rs() -> Result<(), Box<dyn std::error::Error>> {
        let url = redis_url("redis://127.0.0.1:6379/2", AWKWARD)?;
        let info = redis::Client::open(url.as_str())?
            .get_connection_info()
            .clone();
        assert_eq!(info.redis_settings().password(), Some(AWKWARD));
        assert_eq!(info.redis_settings().db(), 2);
        assert_eq!(info.addr().to_string(), "127.0.0.1:6379");
        Ok(())
    }

    #[test]
    fn redis_addresses_that_cannot_take_a_password_are_refused() {
        for bad in [
            "127.0.0.1:6379",
            "redis://:old@127.0.0.1/",
            "unix:///run/redis.sock",
            "redis:///",
        ] {
            assert_eq!(
                redis_url(bad, "pw"),
                Err(ComposeError::RedisAddress),
                "{bad}"
            );
        }
        assert!(redis_url("rediss://cache.internal:6380/0", "pw").is_ok());
    }
}
