//! `hashpool-wallet audit`: fetches what the pool publishes of its settlement (report, signed
//! rate sheet, each of this wallet's quotes with its inclusion proof, the signed commitments
//! of their epochs) and checks it with `hashpool_settlement::audit`.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use hashpool_settlement::{
    audit::{audit, AuditReport, Published, QuoteAnswer, WalletQuote},
    liabilities::{check_mint_report, MintReport},
    rates::{EpochCommitment, RateSheet},
};
use serde_json::Value;

/// The pool's x-only authority key, 64 hex characters.
pub fn parse_pool_key(text: &str) -> anyhow::Result<[u8; 32]> {
    parse_x_only(text, "the pool's")
}

/// The mint's x-only authority key (`mint.authority_public_key`), 64 hex characters.
pub fn parse_mint_key(text: &str) -> anyhow::Result<[u8; 32]> {
    parse_x_only(text, "the mint's")
}

fn parse_x_only(text: &str, whose: &str) -> anyhow::Result<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("{whose} key is its x-only authority key: 64 hex characters");
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)?;
    }
    Ok(key)
}

async fn get_json(http: &reqwest::Client, url: reqwest::Url) -> anyhow::Result<(u16, Value)> {
    let response = http
        .get(url.clone())
        .send()
        .await
        .with_context(|| format!("{url}: unreachable"))?;
    let status = response.status().as_u16();
    let body = response
        .json()
        .await
        .with_context(|| format!("{url}: not JSON"))?;
    Ok((status, body))
}

pub(crate) fn url(base: &str, segments: &[&str]) -> anyhow::Result<reqwest::Url> {
    let mut url = reqwest::Url::parse(base).with_context(|| format!("pool API `{base}`"))?;
    url.path_segments_mut()
        .map_err(|_| anyhow::anyhow!("pool API `{base}` cannot take a path"))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// Audits `quotes` (`(quote id, amount)`) of the key `key_hex` against the pool at `pool_api`.
pub async fn audit_quotes(
    pool_api: &str,
    pool_key: &[u8; 32],
    key_hex: &str,
    quotes: &[(String, u64)],
) -> anyhow::Result<AuditReport> {
    audit_pool_and_mint(pool_api, pool_key, None, key_hex, quotes).await
}

/// The mint whose reports an audit checks too: its URL and x-only authority key.
pub struct MintToAudit<'a> {
    pub url: &'a str,
    pub key: [u8; 32],
}

/// [`audit_quotes`], and with `mint`, each of the wallet's closed epochs in the mint's signed
/// report: its arithmetic, and the same quotes as the pool's commitment.
pub async fn audit_pool_and_mint(
    pool_api: &str,
    pool_key: &[u8; 32],
    mint: Option<MintToAudit<'_>>,
    key_hex: &str,
    quotes: &[(String, u64)],
) -> anyhow::Result<AuditReport> {
    let http = reqwest::Client::new();
    let (status, report) = get_json(&http, url(pool_api, &["api", "v1", "settlement"])?).await?;
    if status != 200 {
        bail!("the pool publishes no settlement report (HTTP {status}): {report}");
    }
    let (status, sheet) =
        get_json(&http, url(pool_api, &["api", "v1", "settlement", "rates"])?).await?;
    if status != 200 {
        bail!("the pool publishes no rate sheet (HTTP {status}): {sheet}");
    }
    let sheet: RateSheet = serde_json::from_value(sheet).context("the rate sheet")?;
    let mut wallet_quotes = Vec::with_capacity(quotes.len());
    let mut commitments: BTreeMap<u32, EpochCommitment> = BTreeMap::new();
    for (id, amount) in quotes {
        let (status, body) = get_json(
            &http,
            url(pool_api, &["api", "v1", "settlement", "quotes", id])?,
        )
        .await?;
        let answer = match status {
            200 => Some(
                serde_json::from_value::<QuoteAnswer>(body)
                    .with_context(|| format!("the pool's proof for quote {id}"))?,
            ),
            // In the open epoch, from before epochs, or unknown to the pool: the audit says
            // how much ehash it could not place; an unknown one is the pool's to explain.
            404 => None,
            other => bail!("the pool's proof for quote {id}: HTTP {other}: {body}"),
        };
        if let Some(a) = &answer {
            if let std::collections::btree_map::Entry::Vacant(slot) = commitments.entry(a.epoch) {
                let epoch = a.epoch.to_string();
                let (status, body) = get_json(
                    &http,
                    url(pool_api, &["api", "v1", "settlement", "epochs", &epoch])?,
                )
                .await?;
                if status == 200 {
                    let commitment: EpochCommitment = serde_json::from_value(body)
                        .with_context(|| format!("epoch {epoch}'s commitment"))?;
                    slot.insert(commitment);
                }
            }
        }
        wallet_quotes.push(WalletQuote {
            id: id.clone(),
            amount: *amount,
            answer,
        });
    }
    let published = Published {
        report,
        sheet,
        commitments,
    };
    let mut audited = audit(pool_key, key_hex, &wallet_quotes, &published);
    if let Some(mint) = mint {
        for (epoch, commitment) in &published.commitments {
            let e = epoch.to_string();
            let address = url(mint.url, &["v1", "hashpool", "epochs", &e, "report"])?;
            let (status, body) = get_json(&http, address).await?;
            if status != 200 {
                audited.problems.push(format!(
                    "the mint publishes no report of epoch {epoch} (HTTP {status}): {body}"
                ));
                continue;
            }
            match serde_json::from_value::<MintReport>(body) {
                Ok(r) => audited.problems.extend(check_mint_report(
                    *epoch,
                    &r,
                    &mint.key,
                    Some(commitment),
                )),
                Err(e) => audited
                    .problems
                    .push(format!("the mint's report of epoch {epoch}: {e}")),
            }
        }
    }
    Ok(audited)
}

/// The audit as text: per epoch the wallet's ehash, its state and value; then any problem.
pub fn describe(report: &AuditReport) -> String {
    let mut lines: Vec<String> = report
        .epochs
        .iter()
        .map(|e| {
            format!(
                "epoch {}: {} hash, {}{}",
                e.epoch,
                e.ehash,
                e.state,
                e.sats
                    .map_or(String::new(), |s| format!(", worth {s} sats"))
            )
        })
        .collect();
    if report.unplaced > 0 {
        lines.push(format!(
            "{} hash not in a closed epoch yet",
            report.unplaced
        ));
    }
    if report.problems.is_empty() {
        lines.push("every check passed".into());
    } else {
        lines.extend(report.problems.iter().map(|p| format!("PROBLEM: {p}")));
    }
    lines.join("\n")
}
