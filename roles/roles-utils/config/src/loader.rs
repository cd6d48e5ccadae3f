use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// Environment variables that override configuration keys start with this prefix.
pub const ENV_PREFIX: &str = "HASHPOOL";
/// Separates prefix, section and key: `HASHPOOL__POOL__LISTEN_ADDRESS`.
pub const ENV_SEPARATOR: &str = "__";

/// Why a configuration could not be loaded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {file}: not found")]
    NotFound { file: PathBuf },
    #[error("config file {file}: cannot be parsed: {reason}")]
    Parse { file: PathBuf, reason: String },
    #[error("config file {file}: missing key `{key}`")]
    MissingKey { file: PathBuf, key: String },
    #[error("config file {file}: bad value for key `{key}`: {reason}")]
    BadValue {
        file: PathBuf,
        key: String,
        reason: String,
    },
}

/// Loads `path` into `T`, with `HASHPOOL__SECTION__KEY` environment overrides from the process
/// environment.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    load_with_env(path, std::env::vars())
}

/// Like [`load`], with the environment given explicitly (tests use this so they never race on
/// the process environment).
pub fn load_with_env<T, I>(path: &Path, env: I) -> Result<T, ConfigError>
where
    T: DeserializeOwned,
    I: IntoIterator<Item = (String, String)>,
{
    let file = path.to_path_buf();
    if !path.is_file() {
        return Err(ConfigError::NotFound { file });
    }
    let overrides: config::Map<String, String> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}{ENV_SEPARATOR}")))
        .collect();
    let built = config::Config::builder()
        .add_source(config::File::from(path).format(config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator(ENV_SEPARATOR)
                .separator(ENV_SEPARATOR)
                .try_parsing(true)
                .source(Some(overrides)),
        )
        .build()
        .map_err(|e| ConfigError::Parse {
            file: file.clone(),
            reason: e.to_string(),
        })?;

    // serde_path_to_error gives the full dotted path of the failing key, which the `config`
    // crate's own errors often lack for nested structs.
    serde_path_to_error::deserialize::<_, T>(built).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        classify(file, path, inner)
    })
}

fn classify(file: PathBuf, path: String, err: config::ConfigError) -> ConfigError {
    let message = err.to_string();
    // A missing field is reported by serde at the parent struct: append the field name.
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
    {
        let key = if path == "." || path.is_empty() {
            field.to_string()
        } else {
            format!("{path}.{field}")
        };
        return ConfigError::MissingKey { file, key };
    }
    if let config::ConfigError::NotFound(key) = &err {
        return ConfigError::MissingKey {
            file,
            key: key.clone(),
        };
    }
    let key = match &err {
        config::ConfigError::Type { key: Some(k), .. } if path == "." => k.clone(),
        _ => path,
    };
    ConfigError::BadValue {
        file,
        key,
        reason: message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::io::Write;

    #[derive(Debug, Deserialize)]
    struct Example {
        server: Server,
    }
    #[derive(Debug, Deserialize)]
    struct Server {
        address: std::net::SocketAddr,
        shares_per_minute: f32,
        #[serde(default)]
        tag: Option<String>,
    }

    fn file(content: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        f.write_all(content.as_bytes()).unwrap();
        f
    }

    const GOOD: &str = "[server]\naddress = \"127.0.0.1:1\"\nshares_per_minute = 6.0\n";

    #[test]
    fn good_file_loads() {
        let f = file(GOOD);
        let c: Example = load_with_env(f.path(), vec![]).unwrap();
        assert_eq!(c.server.address.port(), 1);
        assert_eq!(c.server.shares_per_minute, 6.0);
        assert_eq!(c.server.tag, None);
    }

    #[test]
    fn env_overrides_a_key() {
        let f = file(GOOD);
        let env = vec![
            (
                "HASHPOOL__SERVER__ADDRESS".to_string(),
                "127.0.0.1:9".to_string(),
            ),
            ("HASHPOOL__SERVER__TAG".to_string(), "x".to_string()),
            ("OTHER__SERVER__ADDRESS".to_string(), "nonsense".to_string()),
        ];
        let c: Example = load_with_env(f.path(), env).unwrap();
        assert_eq!(c.server.address.port(), 9);
        assert_eq!(c.server.tag.as_deref(), Some("x"));
    }

    #[test]
    fn missing_file_names_the_file() {
        let err = load_with_env::<Example, _>(Path::new("/nonexistent/x.toml"), vec![])
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/x.toml"), "{err}");
        assert!(err.contains("not found"), "{err}");
    }

    #[test]
    fn missing_key_is_named() {
        let f = file("[server]\naddress = \"127.0.0.1:1\"\n");
        let err = load_with_env::<Example, _>(f.path(), vec![]).unwrap_err();
        assert!(
            matches!(&err, ConfigError::MissingKey { key, .. } if key == "server.shares_per_minute"),
            "{err:?}"
        );
        assert!(err.to_string().contains(&f.path().display().to_string()));
    }

    #[test]
    fn missing_section_is_named() {
        let f = file("[other]\nx = 1\n");
        let err = load_with_env::<Example, _>(f.path(), vec![]).unwrap_err();
        assert!(
            matches!(&err, ConfigError::MissingKey { key, .. } if key == "server"),
            "{err:?}"
        );
    }

    #[test]
    fn bad_value_is_named() {
        let f = file("[server]\naddress = \"not an address\"\nshares_per_minute = 6.0\n");
        let err = load_with_env::<Example, _>(f.path(), vec![]).unwrap_err();
        assert!(
            matches!(&err, ConfigError::BadValue { key, .. } if key == "server.address"),
            "{err:?}"
        );
        let f = file("[server]\naddress = \"127.0.0.1:1\"\nshares_per_minute = \"many\"\n");
        let err = load_with_env::<Example, _>(f.path(), vec![]).unwrap_err();
        assert!(
            matches!(&err, ConfigError::BadValue { key, .. } if key == "server.shares_per_minute"),
            "{err:?}"
        );
    }

    #[test]
    fn bad_env_value_is_named() {
        let f = file(GOOD);
        let env = vec![(
            "HASHPOOL__SERVER__SHARES_PER_MINUTE".to_string(),
            "lots".to_string(),
        )];
        let err = load_with_env::<Example, _>(f.path(), env).unwrap_err();
        assert!(
            matches!(&err, ConfigError::BadValue { key, .. } if key == "server.shares_per_minute"),
            "{err:?}"
        );
    }

    #[test]
    fn malformed_toml_names_the_file() {
        let f = file("[server\naddress = ");
        let err = load_with_env::<Example, _>(f.path(), vec![]).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err:?}");
        assert!(err.to_string().contains(&f.path().display().to_string()));
    }
}
