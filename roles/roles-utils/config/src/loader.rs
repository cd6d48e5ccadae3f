use std::path::{Path, PathBuf};

use config::{Source, Value, ValueKind};
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
    /// Keys written in the file that the role does not know, as dotted paths, sorted (never
    /// empty). A misspelled optional key would otherwise leave its setting off without a word.
    #[error(
        "config file {file}: unknown {} (misspelled? see docs/configuration.md)",
        quoted_keys(.keys)
    )]
    UnknownKeys { file: PathBuf, keys: Vec<String> },
}

fn quoted_keys(keys: &[String]) -> String {
    let list = keys
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if keys.len() == 1 {
        format!("key {list}")
    } else {
        format!("keys {list}")
    }
}

/// Loads `path` into `T`, with `HASHPOOL__SECTION__KEY` environment overrides from the process
/// environment.
///
/// A key written in the file that `T` does not know is refused ([`ConfigError::UnknownKeys`]).
/// A key that only the environment sets is not: one environment serves every file a role loads
/// (its own and the shared topology) and, under systemd, every role, so each variable is meant
/// for some of them only.
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
    let file_source = config::File::from(path).format(config::FileFormat::Toml);
    let built = config::Config::builder()
        .add_source(file_source.clone())
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

    // The file alone, to tell the keys written in it from those only the environment sets.
    let in_file = file_source.collect().map_err(|e| ConfigError::Parse {
        file: file.clone(),
        reason: e.to_string(),
    })?;

    // serde_ignored reports every key `T` has no field for; serde_path_to_error gives the full
    // dotted path of a failing key, which the `config` crate's own errors often lack for nested
    // structs.
    let mut ignored: Vec<Vec<Segment>> = Vec::new();
    let mut note = |p: serde_ignored::Path<'_>| ignored.push(segments(&p));
    let result = serde_path_to_error::deserialize::<_, T>(serde_ignored::Deserializer::new(
        built, &mut note,
    ));

    // Unknown keys first: a misspelled required key also shows up as a missing one, and the
    // misspelling is what the operator has to fix.
    let mut unknown: Vec<String> = ignored
        .iter()
        .filter(|key| written_in(&in_file, key))
        .map(|key| dotted(key))
        .collect();
    if !unknown.is_empty() {
        unknown.sort();
        unknown.dedup();
        return Err(ConfigError::UnknownKeys {
            file,
            keys: unknown,
        });
    }
    result.map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        classify(file, path, inner)
    })
}

/// One step of the path to an ignored key.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// The path serde_ignored reports, from the root, without the steps that name no key (`Option`
/// and newtype wrappers).
fn segments(path: &serde_ignored::Path<'_>) -> Vec<Segment> {
    use serde_ignored::Path as P;
    match path {
        P::Root => Vec::new(),
        P::Seq { parent, index } => {
            let mut v = segments(parent);
            v.push(Segment::Index(*index));
            v
        }
        P::Map { parent, key } => {
            let mut v = segments(parent);
            v.push(Segment::Key(key.clone()));
            v
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            segments(parent)
        }
    }
}

/// `section.key`, `section.list[2].key`: as serde_path_to_error writes paths.
fn dotted(path: &[Segment]) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    if out.is_empty() {
        ".".to_string()
    } else {
        out
    }
}

/// Whether the file itself has a value at `path`. The `config` crate lower-cases the keys of
/// tables when it merges sources, so keys are compared ignoring case.
fn written_in(table: &config::Map<String, Value>, path: &[Segment]) -> bool {
    let Some((Segment::Key(first), rest)) = path.split_first() else {
        return false;
    };
    let Some(mut value) = get_key(table, first) else {
        return false;
    };
    for segment in rest {
        let next = match (segment, &value.kind) {
            (Segment::Key(k), ValueKind::Table(t)) => get_key(t, k),
            (Segment::Index(i), ValueKind::Array(a)) => a.get(*i),
            _ => None,
        };
        match next {
            Some(v) => value = v,
            None => return false,
        }
    }
    true
}

fn get_key<'a>(table: &'a config::Map<String, Value>, key: &str) -> Option<&'a Value> {
    let key = key.to_lowercase();
    table
        .iter()
        .find(|(k, _)| k.to_lowercase() == key)
        .map(|(_, v)| v)
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
        let f = file("# nothing here\n");
        let err = load_with_env::<Example, _>(f.path(), vec![]).unwrap_err();
        assert!(
            matches!(&err, ConfigError::MissingKey { key, .. } if key == "server"),
            "{err:?}"
        );
        // A misspelled section is both missing and unknown: the misspelling is named.
        let keys = unknown_keys::<Example>("[sever]\naddress = \"127.0.0.1:1\"\n", vec![]);
        assert_eq!(keys, ["sever"]);
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

    /// The shape of the role configs: an optional pinned key next to a required address, an
    /// array of tables, and an optional section.
    #[derive(Debug, Deserialize)]
    struct Role {
        template_provider: Endpoint,
        #[serde(default)]
        fallback: Vec<Endpoint>,
        #[serde(default)]
        stats_reporter: Option<Reporter>,
    }
    #[derive(Debug, Deserialize)]
    struct Endpoint {
        address: std::net::SocketAddr,
        #[serde(default)]
        authority_public_key: Option<String>,
    }
    #[derive(Debug, Deserialize)]
    struct Reporter {
        interval_secs: u64,
    }

    const ROLE: &str = "[template_provider]\naddress = \"127.0.0.1:1\"\n";

    fn unknown_keys<T: DeserializeOwned + std::fmt::Debug>(
        content: &str,
        env: Vec<(String, String)>,
    ) -> Vec<String> {
        let f = file(content);
        match load_with_env::<T, _>(f.path(), env) {
            Err(ConfigError::UnknownKeys { file, keys }) => {
                assert_eq!(file, f.path());
                keys
            }
            other => panic!("expected unknown keys, got {other:?}"),
        }
    }

    fn var(key: &str, value: &str) -> (String, String) {
        (key.to_string(), value.to_string())
    }

    #[test]
    fn unknown_top_level_key_is_refused() {
        let keys = unknown_keys::<Example>(&format!("{GOOD}[sever]\naddress = \"x\"\n"), vec![]);
        assert_eq!(keys, ["sever"]);
        let keys = unknown_keys::<Example>(&format!("verbose = true\n{GOOD}"), vec![]);
        assert_eq!(keys, ["verbose"]);
    }

    #[test]
    fn unknown_nested_key_is_refused_with_its_dotted_path_and_the_file() {
        let f = file(&format!("{GOOD}shares_per_hour = 360.0\n"));
        let err = load_with_env::<Example, _>(f.path(), vec![]).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with(&format!(
                "config file {}: unknown key `server.shares_per_hour`",
                f.path().display()
            )),
            "{message}"
        );
        assert!(message.contains("docs/configuration.md"), "{message}");
    }

    #[test]
    fn misspelled_optional_key_is_refused_not_left_unset() {
        let content = format!("{ROLE}authority_publc_key = \"9auqWEzQDVyd\"\n");
        let keys = unknown_keys::<Role>(&content, vec![]);
        assert_eq!(keys, ["template_provider.authority_publc_key"]);
        // Spelled right, the same file loads and the key is set.
        let f = file(&content.replace("publc", "public"));
        let c: Role = load_with_env(f.path(), vec![]).unwrap();
        assert_eq!(
            c.template_provider.authority_public_key.as_deref(),
            Some("9auqWEzQDVyd")
        );
        let f = file(&format!("{GOOD}tga = \"x\"\n"));
        let err = load_with_env::<Example, _>(f.path(), vec![]).unwrap_err();
        assert!(
            matches!(&err, ConfigError::UnknownKeys { keys, .. } if keys == &["server.tga"]),
            "{err:?}"
        );
    }

    #[test]
    fn misspelled_required_key_is_reported_as_unknown_rather_than_missing() {
        let keys = unknown_keys::<Example>(
            "[server]\naddress = \"127.0.0.1:1\"\nshare_per_minute = 6.0\n",
            vec![],
        );
        assert_eq!(keys, ["server.share_per_minute"]);
    }

    #[test]
    fn unknown_key_in_an_optional_section_is_refused() {
        let keys = unknown_keys::<Role>(
            &format!("{ROLE}[stats_reporter]\ninterval_secs = 5\nbufer = 10\n"),
            vec![],
        );
        assert_eq!(keys, ["stats_reporter.bufer"]);
        let f = file(&format!("{ROLE}[stats_reporter]\ninterval_secs = 5\n"));
        let c: Role = load_with_env(f.path(), vec![]).unwrap();
        assert_eq!(c.stats_reporter.map(|r| r.interval_secs), Some(5));
    }

    #[test]
    fn unknown_key_in_an_array_of_tables_is_refused_with_its_index() {
        let content = format!(
            "{ROLE}[[fallback]]\naddress = \"127.0.0.1:2\"\n\
             [[fallback]]\naddress = \"127.0.0.1:3\"\nauthority_pubkey = \"k\"\n"
        );
        let keys = unknown_keys::<Role>(&content, vec![]);
        assert_eq!(keys, ["fallback[1].authority_pubkey"]);
        let f = file(&content.replace("authority_pubkey", "authority_public_key"));
        let c: Role = load_with_env(f.path(), vec![]).unwrap();
        assert_eq!(c.template_provider.address.port(), 1);
        assert_eq!(c.fallback.len(), 2);
        assert_eq!(c.fallback[1].address.port(), 3);
        assert_eq!(c.fallback[1].authority_public_key.as_deref(), Some("k"));
    }

    #[test]
    fn every_unknown_key_is_listed_sorted() {
        let f = file(&format!("zeta = 1\n{GOOD}tga = \"x\"\n[alpha]\nx = 1\n"));
        let err = load_with_env::<Example, _>(f.path(), vec![]).unwrap_err();
        assert!(
            matches!(&err, ConfigError::UnknownKeys { keys, .. } if keys == &["alpha", "server.tga", "zeta"]),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains("unknown keys `alpha`, `server.tga`, `zeta`"),
            "{err}"
        );
    }

    #[test]
    fn unknown_key_written_in_another_case_is_refused() {
        // The `config` crate lower-cases keys when it merges sources.
        let keys = unknown_keys::<Example>(&format!("{GOOD}TGA = \"x\"\n"), vec![]);
        assert_eq!(keys, ["server.tga"]);
    }

    #[test]
    fn env_keys_the_type_does_not_know_are_left_to_the_files_that_do() {
        // One environment serves the role's own file and the shared topology (and, under
        // systemd, every role): a variable for a key of the other file, in a section both have
        // or in a section only the other has, does not stop this one from loading.
        let f = file(GOOD);
        let env = vec![
            var("HASHPOOL__SERVER__AUTHORITY_SECRET_KEY", "secret"),
            var("HASHPOOL__WALLET__ENABLED", "false"),
            var("HASHPOOL__SERVER__SHARES_PER_MINUTE", "7.0"),
        ];
        let c: Example = load_with_env(f.path(), env).unwrap();
        assert_eq!(c.server.shares_per_minute, 7.0);
    }

    #[test]
    fn env_override_of_an_unknown_key_written_in_the_file_is_still_refused() {
        let keys = unknown_keys::<Example>(
            &format!("{GOOD}tga = \"x\"\n"),
            vec![var("HASHPOOL__SERVER__TGA", "y")],
        );
        assert_eq!(keys, ["server.tga"]);
    }

    #[test]
    fn malformed_toml_names_the_file() {
        let f = file("[server\naddress = ");
        let err = load_with_env::<Example, _>(f.path(), vec![]).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err:?}");
        assert!(err.to_string().contains(&f.path().display().to_string()));
    }
}
