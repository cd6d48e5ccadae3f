//! `hashpool keys`: a deployment's secrets, made once. Each role's secret key goes to its own
//! root-only environment file (`keys/<role>.env`, read by systemd before it drops privileges, so
//! a role sees its own secret only); the matching public keys are written into the shared
//! topology files; the translator's wallet mnemonic is created in its data directory. Existing
//! secrets are never replaced, so running it again (every upgrade) changes nothing.

use std::{
    fs,
    io::Write,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use stratum_apps::key_utils::{Secp256k1PublicKey, Secp256k1SecretKey};

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error("{path}: readable by other users (mode {mode:o}); run `chmod 600 {path}`")]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("{path}: no valid {var} line ({reason}); restore it from backup, or delete it to make a new key (the role's public key then changes)")]
    Bad {
        path: PathBuf,
        var: &'static str,
        reason: String,
    },
    #[error("{path}: {reason}")]
    Topology { path: PathBuf, reason: String },
}

/// A role with a secret key: its env file name and the config override that carries it.
pub struct RoleKey {
    pub role: &'static str,
    pub var: &'static str,
}

pub const ROLE_KEYS: [RoleKey; 7] = [
    RoleKey {
        role: "pool",
        var: "HASHPOOL__POOL__AUTHORITY_SECRET_KEY",
    },
    RoleKey {
        role: "mint",
        var: "HASHPOOL__MINT__AUTHORITY_SECRET_KEY",
    },
    RoleKey {
        role: "stats-pool",
        var: "HASHPOOL__STATS__AUTHORITY_SECRET_KEY",
    },
    RoleKey {
        role: "stats-proxy",
        var: "HASHPOOL__STATS__AUTHORITY_SECRET_KEY",
    },
    RoleKey {
        role: "translator",
        var: "HASHPOOL__STATS_REPORTER__SECRET_KEY",
    },
    RoleKey {
        role: "jd-server",
        var: "HASHPOOL__JD_SERVER__AUTHORITY_SECRET_KEY",
    },
    // The jd-client's Noise key for its own miners (they pin its public half).
    RoleKey {
        role: "jd-client",
        var: "HASHPOOL__JD_CLIENT__AUTHORITY_SECRET_KEY",
    },
];

/// The public keys of one deployment, by role, and what was kept as the operator set it.
#[derive(Debug, Clone)]
pub struct PublicKeys(pub Vec<(&'static str, Secp256k1PublicKey)>, pub Vec<String>);

impl PublicKeys {
    pub fn of(&self, role: &str) -> Option<Secp256k1PublicKey> {
        self.0.iter().find(|(r, _)| *r == role).map(|(_, k)| *k)
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> KeysError + '_ {
    move |e| KeysError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Makes what is missing and returns every role's public key.
pub fn ensure(config_dir: &Path, data_dir: &Path) -> Result<PublicKeys, KeysError> {
    let keys_dir = config_dir.join("keys");
    fs::create_dir_all(&keys_dir).map_err(io_err(&keys_dir))?;
    fs::set_permissions(&keys_dir, fs::Permissions::from_mode(0o700)).map_err(io_err(&keys_dir))?;
    let mut public = Vec::new();
    let mut made = Vec::new();
    for key in &ROLE_KEYS {
        let path = keys_dir.join(format!("{}.env", key.role));
        let existed = path.exists();
        let secret = load_or_create(&path, key.var)?;
        if !existed {
            made.push(key.role);
        }
        public.push((key.role, Secp256k1PublicKey::from(secret)));
    }
    let mut public = PublicKeys(public, Vec::new());
    public.1 = write_topology(config_dir, &public, &made)?;

    let mnemonic = data_dir.join("translator").join("mnemonic");
    hashpool_config::secret_file::load_or_create(&mnemonic, || {
        bip39::Mnemonic::generate(12)
            .expect("12 words is a valid length")
            .to_string()
    })
    .map_err(|e| KeysError::Io {
        path: mnemonic.clone(),
        reason: e.to_string(),
    })?;
    Ok(public)
}

fn load_or_create(path: &Path, var: &'static str) -> Result<Secp256k1SecretKey, KeysError> {
    match fs::read_to_string(path) {
        Ok(text) => {
            let mode = fs::metadata(path)
                .map_err(io_err(path))?
                .permissions()
                .mode()
                & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeysError::TooOpen {
                    path: path.to_path_buf(),
                    mode,
                });
            }
            let bad = |reason: String| KeysError::Bad {
                path: path.to_path_buf(),
                var,
                reason,
            };
            let value = text
                .lines()
                .filter_map(|l| l.trim().strip_prefix(var)?.strip_prefix('='))
                .next_back()
                .ok_or_else(|| bad("missing".into()))?;
            value
                .trim()
                .trim_matches('"')
                .parse::<Secp256k1SecretKey>()
                .map_err(|e| bad(e.to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // SRI's key type wraps another secp256k1 release than `bitcoin`'s: made through
            // its text form (base58check of the 32 secret bytes).
            let fresh =
                bitcoin::secp256k1::SecretKey::new(&mut bitcoin::secp256k1::rand::thread_rng());
            let secret: Secp256k1SecretKey = bitcoin::base58::encode_check(&fresh.secret_bytes())
                .parse()
                .map_err(|e| KeysError::Bad {
                    path: path.to_path_buf(),
                    var,
                    reason: format!("generated key refused: {e:?}"),
                })?;
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(io_err(path))?;
            let text = format!(
                "# Made by `hashpool keys`: this role's secret key. Never commit or share it; back it up.\n{var}={secret}\n"
            );
            file.write_all(text.as_bytes())
                .and_then(|_| file.sync_all())
                .map_err(io_err(path))?;
            Ok(secret)
        }
        Err(e) => Err(io_err(path)(e)),
    }
}

/// The public key the shipped topology files carry until `hashpool keys` replaces it (the
/// well-known SRI test key).
pub const PLACEHOLDER_KEY: &str = "9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72";

/// Puts the public keys into `shared/pool.toml` and `shared/proxy.toml` (comments kept) where
/// they are missing or still the shipped placeholder, and wherever a key was made just now
/// (first install, or a rotation: its file was deleted). Otherwise a key the operator set (a
/// translator pointed at another pool, say) is kept and reported.
fn write_topology(
    config_dir: &Path,
    keys: &PublicKeys,
    made: &[&str],
) -> Result<Vec<String>, KeysError> {
    let key = |role: &str| Entry {
        generated: keys.of(role).map(|k| k.to_string()).unwrap_or_default(),
        replace: made.contains(&role),
    };
    let pool_side = [
        ("pool", "authority_public_key", key("pool")),
        ("mint", "authority_public_key", key("mint")),
        ("stats", "authority_public_key", key("stats-pool")),
        // The pool reports to stats-pool with its authority key.
        ("stats", "reporter_public_keys", key("pool")),
        ("jd_server", "authority_public_key", key("jd-server")),
    ];
    let proxy_side = [
        ("translator", "upstream_authority_public_key", key("pool")),
        ("stats", "authority_public_key", key("stats-proxy")),
        ("stats", "reporter_public_keys", key("translator")),
    ];
    let mut notes = set_keys(&config_dir.join("shared/pool.toml"), &pool_side)?;
    notes.extend(set_keys(
        &config_dir.join("shared/proxy.toml"),
        &proxy_side,
    )?);
    Ok(notes)
}

/// A generated public key, and whether it replaces whatever the file holds.
struct Entry {
    generated: String,
    replace: bool,
}

/// `(section, key, entry)`: a string key is set if missing, the placeholder, or `replace`; in a
/// list (`reporter_public_keys`) the placeholder is dropped (everything, with `replace`) and
/// the generated key added if absent.
fn set_keys(path: &Path, entries: &[(&str, &str, Entry)]) -> Result<Vec<String>, KeysError> {
    let text = fs::read_to_string(path).map_err(io_err(path))?;
    let mut doc: toml_edit::DocumentMut =
        text.parse()
            .map_err(|e: toml_edit::TomlError| KeysError::Topology {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
    let mut notes = Vec::new();
    for (section, key, entry) in entries {
        let generated = &entry.generated;
        let table = doc
            .get_mut(section)
            .and_then(|t| t.as_table_mut())
            .ok_or_else(|| KeysError::Topology {
                path: path.to_path_buf(),
                reason: format!("no [{section}] section"),
            })?;
        let value = if key.ends_with("_keys") {
            let mut list: Vec<String> = table
                .get(key)
                .and_then(|v| v.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            list.retain(|k| k != PLACEHOLDER_KEY && !entry.replace);
            if !list.contains(generated) {
                list.push(generated.clone());
            }
            let mut array = toml_edit::Array::new();
            for k in &list {
                array.push(k.as_str());
            }
            toml_edit::value(array)
        } else {
            match table.get(key).and_then(|v| v.as_str()) {
                Some(current) if current != PLACEHOLDER_KEY && !entry.replace => {
                    if current != generated {
                        notes.push(format!(
                            "{}: kept {section}.{key} = {current} (set by you; the generated key is {generated})",
                            path.display()
                        ));
                    }
                    continue;
                }
                _ => toml_edit::value(generated.as_str()),
            }
        };
        // Keep the comment above the key.
        let decor = table.key(key).map(|k| k.leaf_decor().clone());
        table.insert(key, value);
        if let (Some(decor), Some(mut k)) = (decor, table.key_mut(key)) {
            *k.leaf_decor_mut() = decor;
        }
    }
    let updated = doc.to_string();
    if updated != text {
        let tmp = path.with_extension("toml.tmp");
        fs::write(&tmp, &updated).map_err(io_err(&tmp))?;
        fs::rename(&tmp, path).map_err(io_err(path))?;
    }
    Ok(notes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hashpool_config::{PoolGlobalConfig, ProxyGlobalConfig};

    fn deployment() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("etc/shared");
        fs::create_dir_all(&shared).unwrap();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/prod/shared");
        for f in ["pool.toml", "proxy.toml"] {
            fs::copy(repo.join(f), shared.join(f)).unwrap();
        }
        dir
    }

    fn secret_in(path: &Path, var: &str) -> Secp256k1SecretKey {
        let text = fs::read_to_string(path).unwrap();
        let line = text.lines().find(|l| l.starts_with(var)).unwrap();
        line[var.len() + 1..].parse().unwrap()
    }

    #[test]
    fn keys_are_made_once_and_the_topology_names_them() {
        let dir = deployment();
        let etc = dir.path().join("etc");
        let data = dir.path().join("data");
        let first = ensure(&etc, &data).unwrap();

        for key in &ROLE_KEYS {
            let path = etc.join(format!("keys/{}.env", key.role));
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", path.display());
            let secret = secret_in(&path, key.var);
            assert_eq!(
                Secp256k1PublicKey::from(secret).to_string(),
                first.of(key.role).unwrap().to_string()
            );
        }
        let distinct: std::collections::HashSet<String> =
            first.0.iter().map(|(_, k)| k.to_string()).collect();
        assert_eq!(distinct.len(), ROLE_KEYS.len(), "one key per role");

        // The key type has no equality: compare the text forms.
        let key = |role: &str| first.of(role).unwrap().to_string();
        let pool: PoolGlobalConfig =
            hashpool_config::load_with_env(&etc.join("shared/pool.toml"), []).unwrap();
        assert_eq!(pool.pool.authority_public_key.to_string(), key("pool"));
        assert_eq!(pool.mint.authority_public_key.to_string(), key("mint"));
        assert_eq!(
            pool.stats.authority_public_key.to_string(),
            key("stats-pool")
        );
        let reporters: Vec<String> = pool
            .stats
            .reporter_public_keys
            .iter()
            .map(|k| k.to_string())
            .collect();
        assert_eq!(reporters, vec![key("pool")]);
        let proxy: ProxyGlobalConfig =
            hashpool_config::load_with_env(&etc.join("shared/proxy.toml"), []).unwrap();
        assert_eq!(
            proxy.translator.upstream_authority_public_key.to_string(),
            key("pool")
        );
        assert_eq!(
            proxy.stats.authority_public_key.to_string(),
            key("stats-proxy")
        );
        let reporters: Vec<String> = proxy
            .stats
            .reporter_public_keys
            .iter()
            .map(|k| k.to_string())
            .collect();
        assert_eq!(reporters, vec![key("translator")]);
        let mnemonic = fs::read_to_string(data.join("translator/mnemonic")).unwrap();
        bip39::Mnemonic::parse(mnemonic.trim()).unwrap();

        // Again (an upgrade): nothing changes.
        let before: Vec<String> = ["keys/pool.env", "shared/pool.toml", "shared/proxy.toml"]
            .iter()
            .map(|f| fs::read_to_string(etc.join(f)).unwrap())
            .collect();
        let second = ensure(&etc, &data).unwrap();
        let after: Vec<String> = ["keys/pool.env", "shared/pool.toml", "shared/proxy.toml"]
            .iter()
            .map(|f| fs::read_to_string(etc.join(f)).unwrap())
            .collect();
        assert_eq!(before, after);
        assert_eq!(
            second.of("pool").unwrap().to_string(),
            first.of("pool").unwrap().to_string()
        );
        assert_eq!(
            fs::read_to_string(data.join("translator/mnemonic")).unwrap(),
            mnemonic
        );
        assert!(second.1.is_empty(), "{:?}", second.1);

        // A translator the operator pointed at another pool keeps that pool's key.
        let proxy_file = etc.join("shared/proxy.toml");
        let remote = first.of("mint").unwrap().to_string();
        let text = fs::read_to_string(&proxy_file)
            .unwrap()
            .replace(&key("pool"), &remote);
        fs::write(&proxy_file, text).unwrap();
        let third = ensure(&etc, &data).unwrap();
        let proxy: ProxyGlobalConfig = hashpool_config::load_with_env(&proxy_file, []).unwrap();
        assert_eq!(
            proxy.translator.upstream_authority_public_key.to_string(),
            remote
        );
        assert!(
            third
                .1
                .iter()
                .any(|n| n.contains("upstream_authority_public_key")),
            "{:?}",
            third.1
        );
    }

    #[test]
    fn damaged_or_exposed_key_files_are_refused() {
        let dir = deployment();
        let etc = dir.path().join("etc");
        let data = dir.path().join("data");
        ensure(&etc, &data).unwrap();
        let pool = etc.join("keys/pool.env");

        fs::set_permissions(&pool, fs::Permissions::from_mode(0o644)).unwrap();
        let err = ensure(&etc, &data).unwrap_err();
        assert!(matches!(err, KeysError::TooOpen { .. }), "{err}");

        fs::set_permissions(&pool, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&pool, "HASHPOOL__POOL__AUTHORITY_SECRET_KEY=not-a-key\n").unwrap();
        let err = ensure(&etc, &data).unwrap_err();
        assert!(
            err.to_string()
                .contains("no valid HASHPOOL__POOL__AUTHORITY_SECRET_KEY"),
            "{err}"
        );
    }
}
