//! What `/v1/info` (NUT-06) tells wallets: the operator's `[mint.info]` fields, and the truth
//! about what this mint does. The only melt is redemption (`hashpool-redeem`, when it is on),
//! so NUT-05 shows that method for ehash or is disabled, and NUT-17 offers no melt-quote
//! subscriptions.

use std::str::FromStr;

use cdk::mint_url::MintUrl;
use cdk::nuts::{
    nut05,
    nut17::{SupportedMethods, WsCommand},
    ContactInfo, CurrencyUnit, MintInfo, PaymentMethod, PublicKey,
};
use serde::Deserialize;

/// `[mint.info]` in the mint's config: the NUT-06 fields an operator chooses. Every field is
/// optional; [`MintInfoSettings::checked`] refuses values wallets could not use.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct MintInfoSettings {
    pub name: Option<String>,
    pub description: Option<String>,
    pub description_long: Option<String>,
    /// The mint's public key (compressed secp256k1, hex). CDK 0.18.3 derives none from the
    /// seed, so it is shown only when configured.
    pub pubkey: Option<String>,
    /// The URLs wallets reach the mint by. Default: `[mint.public_url]`. Quote lookups signed
    /// for any of them are accepted.
    #[serde(default)]
    pub urls: Vec<String>,
    #[serde(default)]
    pub contact: Vec<ContactSettings>,
    /// Message of the day: wallets show it to their users.
    pub motd: Option<String>,
    pub icon_url: Option<String>,
    pub tos_url: Option<String>,
}

/// One NUT-06 contact: `method` (e.g. `email`, `nostr`, `twitter`) and the address.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ContactSettings {
    pub method: String,
    pub info: String,
}

/// Why `[mint.info]` was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InfoError {
    #[error("`mint.info.{0}` is empty: give it a value or leave it out")]
    Empty(&'static str),
    #[error("`mint.info.{field}`: `{url}` is not an http(s) URL: {reason}")]
    Url {
        field: &'static str,
        url: String,
        reason: String,
    },
    #[error(
        "`mint.info.pubkey`: `{0}` is not a public key (66 hex characters, compressed secp256k1)"
    )]
    Pubkey(String),
    #[error("`mint.info.contact` entry {0}: `method` and `info` must both be non-empty")]
    Contact(usize),
    #[error(
        "`mint.{0}` and `mint.info.{0}` are both set: keep `mint.info.{0}` only (`mint.{0}` is \
         the older spelling)"
    )]
    Duplicate(&'static str),
}

/// A mint URL in the form wallets sign it in (`MintUrl`'s: lowercase scheme and host, no
/// trailing `/`); only absolute `http`/`https` URLs with a host.
pub fn normalized_url(url: &str) -> Result<String, String> {
    http_url(url).map_err(|e| format!("`{url}` is not a mint URL: {e}"))?;
    MintUrl::from_str(url)
        .map(|u| u.to_string())
        .map_err(|e| format!("`{url}` is not a mint URL: {e}"))
}

/// Checks that `url` is an absolute `http`/`https` URL with a host; returns it parsed.
pub fn http_url(url: &str) -> Result<url::Url, String> {
    let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("scheme `{}` (http or https only)", parsed.scheme()));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("no host".into());
    }
    Ok(parsed)
}

/// True for hosts reserved for examples (RFC 2606/6761): a shipped placeholder never replaced.
pub fn is_placeholder_url(url: &str) -> bool {
    let Ok(parsed) = url::Url::parse(url) else {
        return false;
    };
    let host = parsed.host_str().unwrap_or_default().to_ascii_lowercase();
    let host = host.trim_end_matches('.');
    ["example.org", "example.com", "example.net"]
        .iter()
        .any(|d| host == *d || host.ends_with(&format!(".{d}")))
        || [".example", ".invalid", ".test"]
            .iter()
            .any(|tld| host.ends_with(tld))
}

impl MintInfoSettings {
    /// Takes `mint.name`/`mint.description` (the spelling before `[mint.info]`) when the new
    /// keys are unset; both set is an error, so no value is silently ignored.
    pub fn with_legacy(
        mut self,
        name: Option<String>,
        description: Option<String>,
    ) -> Result<Self, InfoError> {
        fn merge(
            old: Option<String>,
            new: Option<String>,
            field: &'static str,
        ) -> Result<Option<String>, InfoError> {
            match (old, new) {
                (Some(_), Some(_)) => Err(InfoError::Duplicate(field)),
                (old, new) => Ok(new.or(old)),
            }
        }
        self.name = merge(name, self.name, "name")?;
        self.description = merge(description, self.description, "description")?;
        Ok(self)
    }

    /// Every field checked; `urls` normalized as wallets write mint URLs.
    pub fn checked(mut self) -> Result<Self, InfoError> {
        for (field, value) in [
            ("name", &self.name),
            ("description", &self.description),
            ("description_long", &self.description_long),
            ("motd", &self.motd),
        ] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                return Err(InfoError::Empty(field));
            }
        }
        if let Some(pubkey) = &self.pubkey {
            PublicKey::from_hex(pubkey).map_err(|_| InfoError::Pubkey(pubkey.clone()))?;
        }
        for (field, url) in [("icon_url", &self.icon_url), ("tos_url", &self.tos_url)] {
            if let Some(url) = url {
                http_url(url).map_err(|reason| InfoError::Url {
                    field,
                    url: url.clone(),
                    reason,
                })?;
            }
        }
        self.urls = self
            .urls
            .iter()
            .map(|url| {
                normalized_url(url).map_err(|reason| InfoError::Url {
                    field: "urls",
                    url: url.clone(),
                    reason,
                })
            })
            .collect::<Result<_, _>>()?;
        if let Some(i) = self
            .contact
            .iter()
            .position(|c| c.method.trim().is_empty() || c.info.trim().is_empty())
        {
            return Err(InfoError::Contact(i));
        }
        Ok(self)
    }

    /// The URLs `/v1/info` lists: `urls`, or the public URL when none are configured.
    pub fn urls_or(&self, public_url: &str) -> Vec<String> {
        if self.urls.is_empty() {
            vec![public_url.to_string()]
        } else {
            self.urls.clone()
        }
    }

    /// `base` (what the mint builder made) with these fields and the ehash truths:
    /// NUT-05 disabled without methods (or with `redeem`, below), NUT-17 without melt-quote
    /// subscriptions.
    /// With `redeem`, NUT-05 offers the redemption melt of ehash and nothing else.
    pub fn apply(
        &self,
        mut base: MintInfo,
        public_url: &str,
        redeem: bool,
        withdraw: bool,
    ) -> Result<MintInfo, InfoError> {
        base.name = self.name.clone();
        base.description = self.description.clone();
        base.description_long = self.description_long.clone();
        base.pubkey = self
            .pubkey
            .as_deref()
            .map(|p| PublicKey::from_hex(p).map_err(|_| InfoError::Pubkey(p.to_string())))
            .transpose()?;
        base.urls = Some(self.urls_or(public_url));
        base.contact = (!self.contact.is_empty()).then(|| {
            self.contact
                .iter()
                .map(|c| ContactInfo::new(c.method.clone(), c.info.clone()))
                .collect()
        });
        base.motd = self.motd.clone();
        base.icon_url = self.icon_url.clone();
        base.tos_url = self.tos_url.clone();
        let redeem_method = PaymentMethod::Custom(ext_mint_quote::REDEEM_METHOD.into());
        let withdraw_method = PaymentMethod::Custom(ext_mint_quote::WITHDRAW_METHOD.into());
        let redemption_melts: Vec<_> = base
            .nuts
            .nut05
            .methods
            .iter()
            .filter(|m| {
                (redeem && m.method == redeem_method && m.unit != CurrencyUnit::Sat)
                    || (withdraw && m.method == withdraw_method && m.unit == CurrencyUnit::Sat)
            })
            .cloned()
            .collect();
        base.nuts.nut05 = nut05::Settings {
            disabled: redemption_melts.is_empty(),
            methods: redemption_melts,
        };
        // Redemption's sat quotes are made by melts; ehash is not bought by that method, nor
        // sats by withdrawal's.
        base.nuts.nut04.methods.retain(|m| {
            !(m.method == redeem_method && m.unit != CurrencyUnit::Sat)
                && m.method != withdraw_method
        });
        for supported in &mut base.nuts.nut17.supported {
            supported.commands.retain(|c| !is_melt_command(c));
        }
        base.nuts.nut17.supported.retain(|s| !s.commands.is_empty());
        Ok(base)
    }
}

/// The NUT-17 kinds this mint serves for `method`/`unit`: its quotes' state and proof states,
/// never melt quotes.
pub fn websocket_kinds(method: PaymentMethod, unit: CurrencyUnit) -> SupportedMethods {
    let mint_quote = WsCommand::custom_mint_quote(&method.to_string());
    SupportedMethods::new(method, unit, vec![mint_quote, WsCommand::ProofState])
}

fn is_melt_command(command: &WsCommand) -> bool {
    match command {
        WsCommand::Bolt11MeltQuote | WsCommand::Bolt12MeltQuote => true,
        WsCommand::Custom(kind) => kind.ends_with("_melt_quote"),
        WsCommand::Bolt11MintQuote | WsCommand::Bolt12MintQuote | WsCommand::ProofState => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdk::nuts::{nut05::MeltMethodSettings, Nuts};

    const PUBKEY: &str = "02a9acc1e48c25eeeb9289b5031cc57da9fe72f3fe2861d264bdc074209b107ba2";

    fn full() -> MintInfoSettings {
        MintInfoSettings {
            name: Some("Hashpool".into()),
            description: Some("ehash".into()),
            description_long: Some("ehash for accepted work".into()),
            pubkey: Some(PUBKEY.into()),
            urls: vec!["https://Mint.Example.org/".into()],
            contact: vec![ContactSettings {
                method: "email".into(),
                info: "ops@example.org".into(),
            }],
            motd: Some("hello".into()),
            icon_url: Some("https://example.org/icon.png".into()),
            tos_url: Some("https://example.org/tos".into()),
        }
    }

    #[test]
    fn good_settings_pass_and_urls_are_normalized() {
        let checked = full().checked().unwrap();
        assert_eq!(checked.urls, vec!["https://mint.example.org"]);
        assert_eq!(
            MintInfoSettings::default().checked(),
            Ok(MintInfoSettings::default())
        );
    }

    #[test]
    fn bad_settings_are_named() {
        let cases: Vec<(MintInfoSettings, &str)> = vec![
            (
                MintInfoSettings {
                    name: Some(" ".into()),
                    ..full()
                },
                "`mint.info.name` is empty",
            ),
            (
                MintInfoSettings {
                    pubkey: Some("02abc".into()),
                    ..full()
                },
                "`mint.info.pubkey`: `02abc` is not a public key",
            ),
            (
                MintInfoSettings {
                    icon_url: Some("icon.png".into()),
                    ..full()
                },
                "`mint.info.icon_url`: `icon.png` is not an http(s) URL",
            ),
            (
                MintInfoSettings {
                    tos_url: Some("ftp://example.org/tos".into()),
                    ..full()
                },
                "scheme `ftp`",
            ),
            (
                MintInfoSettings {
                    urls: vec!["mint.example.org".into()],
                    ..full()
                },
                "`mint.info.urls`: `mint.example.org`",
            ),
            (
                MintInfoSettings {
                    contact: vec![ContactSettings {
                        method: "email".into(),
                        info: String::new(),
                    }],
                    ..full()
                },
                "`mint.info.contact` entry 0",
            ),
        ];
        for (settings, expected) in cases {
            let err = settings.checked().unwrap_err().to_string();
            assert!(err.contains(expected), "{err} (wanted {expected})");
        }
    }

    #[test]
    fn the_older_name_keys_are_taken_but_never_beside_the_new_ones() {
        let merged = MintInfoSettings::default()
            .with_legacy(Some("old".into()), Some("old text".into()))
            .unwrap();
        assert_eq!(merged.name.as_deref(), Some("old"));
        assert_eq!(merged.description.as_deref(), Some("old text"));
        assert_eq!(
            full().with_legacy(Some("old".into()), None),
            Err(InfoError::Duplicate("name"))
        );
    }

    #[test]
    fn with_redemption_the_info_offers_the_redemption_melt_of_ehash_only() {
        let redeem = PaymentMethod::Custom(ext_mint_quote::REDEEM_METHOD.into());
        let hash = CurrencyUnit::custom("hash");
        let melt = |method: &PaymentMethod, unit: &CurrencyUnit| MeltMethodSettings {
            method: method.clone(),
            unit: unit.clone(),
            method_name: None,
            min_amount: None,
            max_amount: None,
            options: None,
        };
        let mut nuts = Nuts::default();
        let ehash = PaymentMethod::Custom("ehash".into());
        nuts.nut05.methods = vec![
            melt(&ehash, &hash),
            melt(&redeem, &hash),
            melt(&redeem, &CurrencyUnit::Sat),
        ];
        let mint =
            |method: &PaymentMethod, unit: &CurrencyUnit| cdk::nuts::nut04::MintMethodSettings {
                method: method.clone(),
                unit: unit.clone(),
                method_name: None,
                min_amount: None,
                max_amount: None,
                options: None,
            };
        nuts.nut04.methods = vec![
            mint(&ehash, &hash),
            mint(&redeem, &hash),
            mint(&redeem, &CurrencyUnit::Sat),
        ];
        let base = MintInfo {
            nuts,
            ..MintInfo::default()
        };
        let on = MintInfoSettings::default()
            .apply(base.clone(), "https://x.example.org", true, false)
            .unwrap();
        assert!(!on.nuts.nut05.disabled);
        assert_eq!(on.nuts.nut05.methods, vec![melt(&redeem, &hash)]);
        assert_eq!(
            on.nuts.nut04.methods,
            vec![mint(&ehash, &hash), mint(&redeem, &CurrencyUnit::Sat)]
        );
        let off = MintInfoSettings::default()
            .apply(base, "https://x.example.org", false, false)
            .unwrap();
        assert!(off.nuts.nut05.disabled && off.nuts.nut05.methods.is_empty());
    }

    #[test]
    fn with_withdrawals_the_info_offers_the_withdrawal_melt_of_sats() {
        let redeem = PaymentMethod::Custom(ext_mint_quote::REDEEM_METHOD.into());
        let withdraw = PaymentMethod::Custom(ext_mint_quote::WITHDRAW_METHOD.into());
        let hash = CurrencyUnit::custom("hash");
        let melt = |method: &PaymentMethod, unit: &CurrencyUnit| MeltMethodSettings {
            method: method.clone(),
            unit: unit.clone(),
            method_name: None,
            min_amount: None,
            max_amount: None,
            options: None,
        };
        let mint =
            |method: &PaymentMethod, unit: &CurrencyUnit| cdk::nuts::nut04::MintMethodSettings {
                method: method.clone(),
                unit: unit.clone(),
                method_name: None,
                min_amount: None,
                max_amount: None,
                options: None,
            };
        let mut nuts = Nuts::default();
        nuts.nut05.methods = vec![melt(&redeem, &hash), melt(&withdraw, &CurrencyUnit::Sat)];
        nuts.nut04.methods = vec![mint(&withdraw, &CurrencyUnit::Sat)];
        let base = MintInfo {
            nuts,
            ..MintInfo::default()
        };
        let on = MintInfoSettings::default()
            .apply(base.clone(), "https://x.example.org", true, true)
            .unwrap();
        assert_eq!(
            on.nuts.nut05.methods,
            vec![melt(&redeem, &hash), melt(&withdraw, &CurrencyUnit::Sat)]
        );
        assert!(on.nuts.nut04.methods.is_empty());
        let off = MintInfoSettings::default()
            .apply(base, "https://x.example.org", true, false)
            .unwrap();
        assert_eq!(off.nuts.nut05.methods, vec![melt(&redeem, &hash)]);
    }

    #[test]
    fn applied_info_shows_the_fields_melt_disabled_and_no_melt_subscriptions() {
        let method = PaymentMethod::Custom("ehash".into());
        let unit = CurrencyUnit::custom("hash");
        let mut nuts = Nuts::default();
        nuts.nut05.methods.push(MeltMethodSettings {
            method: method.clone(),
            unit: unit.clone(),
            method_name: None,
            min_amount: None,
            max_amount: None,
            options: None,
        });
        nuts.nut17.supported = vec![SupportedMethods::default_custom(
            method.clone(),
            unit.clone(),
        )];
        let base = MintInfo {
            nuts,
            ..MintInfo::default()
        };
        let info = full()
            .checked()
            .unwrap()
            .apply(base.clone(), "https://x.example.org", false, false)
            .unwrap();
        assert!(info.nuts.nut05.disabled);
        assert!(info.nuts.nut05.get_settings(&unit, &method).is_none());
        let kinds = &info.nuts.nut17.supported[0].commands;
        assert_eq!(
            kinds,
            &vec![WsCommand::custom_mint_quote("ehash"), WsCommand::ProofState]
        );
        assert_eq!(websocket_kinds(method, unit).commands, *kinds);
        assert_eq!(info.name.as_deref(), Some("Hashpool"));
        assert_eq!(info.pubkey.map(|p| p.to_hex()).as_deref(), Some(PUBKEY));
        assert_eq!(info.urls, Some(vec!["https://mint.example.org".into()]));
        assert_eq!(
            info.contact,
            Some(vec![ContactInfo::new(
                "email".into(),
                "ops@example.org".into()
            )])
        );
        assert_eq!(info.tos_url.as_deref(), Some("https://example.org/tos"));

        // Nothing configured: the public URL is the one listed; no empty fields.
        let bare = MintInfoSettings::default()
            .apply(base, "https://x.example.org", false, false)
            .unwrap();
        assert_eq!(bare.urls, Some(vec!["https://x.example.org".into()]));
        assert_eq!(bare.contact, None);
        assert_eq!(bare.pubkey, None);
    }

    #[test]
    fn placeholders_are_recognized() {
        assert!(is_placeholder_url("https://mint.example.org"));
        assert!(is_placeholder_url("https://example.com/"));
        assert!(is_placeholder_url("http://mint.invalid"));
        assert!(!is_placeholder_url("https://mint.hashpool.dev"));
        assert!(!is_placeholder_url("http://127.0.0.1:3338"));
    }
}
