//! The miner page's HTML, rendered here rather than in the browser so that every value a miner
//! controls is escaped in one place ([`html::escape`]).

use hashpool_web::{html, units};

use super::answer::MinerAnswer;

fn card(label: &str, id: &str, value: &str, note: &str) -> String {
    let note = if note.is_empty() {
        String::new()
    } else {
        format!(r#"<div class="note">{note}</div>"#)
    };
    format!(
        r#"<div class="card"><div class="label">{label}</div><div class="value" id="{id}">{value}</div>{note}</div>"#
    )
}

fn when(ms: i64, now_ms: i64) -> String {
    format!("{} ({})", units::utc(ms), units::ago(ms, now_ms))
}

fn workers(a: &MinerAnswer) -> String {
    let rows: Vec<Vec<String>> = a
        .workers
        .iter()
        .map(|w| {
            vec![
                html::escape_short(&w.user_identity, 255),
                html::escape_short(&w.vendor, 100),
                format!("{} ({})", w.channel_id, html::escape(&w.kind)),
                units::hashrate(w.nominal_hashrate),
                units::difficulty(w.difficulty),
                units::difficulty(w.best_difficulty),
                w.shares_accepted.to_string(),
                w.shares_rejected.to_string(),
                w.last_share_ms
                    .map_or_else(|| "none yet".into(), |ms| units::ago(ms, a.now_ms)),
            ]
        })
        .collect();
    let more = if a.workers_total > a.workers.len() {
        format!(
            r#"<p class="note">{} of {} open channels listed.</p>"#,
            a.workers.len(),
            a.workers_total
        )
    } else {
        String::new()
    };
    format!(
        r#"<section><h2>Workers: open channels of this key</h2>{}{more}<p class="note">Difficulty is the channel's current share target; best, shares and refusals count since the channel opened.</p></section>"#,
        html::table(
            "workers",
            &[
                "worker (user identity)",
                "proxy / device",
                "channel",
                "num:nominal hashrate",
                "num:difficulty",
                "num:best difficulty",
                "num:accepted",
                "num:refused",
                "last share",
            ],
            &rows,
            "no channel open with this key now",
        )
    )
}

fn rejected(a: &MinerAnswer) -> String {
    let rows: Vec<Vec<String>> = a
        .rejected_by_reason
        .iter()
        .map(|(reason, n)| vec![html::escape_short(reason, 100), n.to_string()])
        .collect();
    format!(
        r#"<section><h2>Shares refused: <span id="shares-rejected">{}</span></h2>{}<p class="note">By the open channels above, since they opened (refused shares are not kept in the ledger).</p></section>"#,
        a.shares_rejected,
        html::table("rejected", &["reason", "num:shares"], &rows, "none")
    )
}

fn blocks(a: &MinerAnswer) -> String {
    let rows: Vec<Vec<String>> = a
        .blocks
        .iter()
        .map(|b| {
            vec![
                units::utc(b.at_ms),
                format!("<code>{}</code>", html::escape(&b.hash)),
                b.channel_id.to_string(),
            ]
        })
        .collect();
    format!(
        r#"<section><h2>Blocks found</h2>{}</section>"#,
        html::table(
            "blocks",
            &["found", "block hash", "num:channel"],
            &rows,
            "none yet"
        )
    )
}

fn epochs(a: &MinerAnswer) -> String {
    let rows: Vec<Vec<String>> = a
        .epoch_values
        .iter()
        .map(|e| {
            vec![
                e.epoch.to_string(),
                e.ehash.to_string(),
                html::escape(&e.state),
                e.sats
                    .map_or("not final yet".into(), |s| units::sats_as_btc(s as i64)),
            ]
        })
        .collect();
    format!(
        r#"<section><h2>ehash by epoch</h2>{}<p class="note">Each epoch's ehash is paid by the blocks found after it closed; once it is final its rate is fixed and signed by the pool (docs/settlement.md).</p></section>"#,
        html::table(
            "epochs",
            &["num:epoch", "num:ehash", "state", "num:value"],
            &rows,
            "none yet"
        )
    )
}

fn quotes(a: &MinerAnswer) -> String {
    let rows: Vec<Vec<String>> = a
        .quotes
        .iter()
        .map(|q| {
            vec![
                units::utc(q.at_ms),
                format!("<code>{}</code>", html::escape_short(&q.quote_id, 100)),
                q.amount.to_string(),
            ]
        })
        .collect();
    format!(
        r#"<section><h2>Recent quotes</h2>{}<p class="note">Quotes are locked to this key (NUT-20): only its holder can mint them.</p></section>"#,
        html::table(
            "quotes",
            &["issued", "quote id", "num:amount"],
            &rows,
            "none yet"
        )
    )
}

fn hashrate_cards(a: &MinerAnswer) -> String {
    a.hashrate
        .iter()
        .map(|w| {
            let label = format!("Hashrate {}", html::escape(&w.window));
            let id = format!("hashrate-{}", html::escape(&w.window));
            let note = if w.complete {
                format!("{} shares", w.shares)
            } else {
                format!(
                    "{} shares: the newest only, since {}",
                    w.shares,
                    units::utc(w.covered_from_ms)
                )
            };
            card(&label, &id, &units::hashrate(w.hashrate), &note)
        })
        .collect()
}

/// The page's content for an answer (the part that refreshes).
pub fn miner(a: &MinerAnswer) -> String {
    let key = html::escape(&a.key);
    let intro = format!(
        r#"<p class="note">Key <code id="miner-key-shown">{key}</code>. Read-only: what the pool's ledger and its open channels say of this key.</p>"#
    );
    if !a.known {
        return format!(
            r#"{intro}<section id="unknown"><h2>No shares from this key yet</h2><p>The pool has credited no share to this key. Once a miner mines with it (its key as user identity, <code>key.worker</code>, or a locking-key TLV), its hashrate and ehash appear here.</p></section>{}"#,
            if a.workers.is_empty() {
                String::new()
            } else {
                workers(a)
            }
        );
    }
    let unit = html::escape(&a.unit);
    let last = match a.last_share_ms {
        Some(ms) => format!(
            r#"<span id="last-share" data-ms="{ms}">{}</span>"#,
            when(ms, a.now_ms)
        ),
        None => r#"<span id="last-share">none</span>"#.into(),
    };
    let cards = format!(
        r#"<div class="cards">{}{}{}</div>"#,
        hashrate_cards(a),
        card(
            "Shares accepted",
            "shares-accepted",
            &a.shares_accepted.to_string(),
            "all time, as the ledger holds them"
        ),
        card("Last share", "last-share-card", &last, ""),
    );
    let ehash = format!(
        r#"<div class="cards">{}{}{}{}</div>"#,
        card(
            &format!("ehash accrued ({unit})"),
            "ehash-accrued",
            &html::escape(&a.ehash.accrued),
            "of all accepted work"
        ),
        card(
            &format!("ehash quoted ({unit})"),
            "ehash-quoted",
            &a.ehash.quoted.to_string(),
            "in quotes the mint issued"
        ),
        card(
            &format!("ehash not yet quoted ({unit})"),
            "ehash-unquoted",
            &html::escape(&a.ehash.unquoted),
            &format!(
                r#"<span id="ehash-requested">{}</span> requested from the mint, <span id="ehash-pending">{}</span> pending for the next batch"#,
                a.ehash.requested,
                html::escape(&a.ehash.pending)
            )
        ),
        card(
            "Blocks found",
            "blocks-found",
            &a.blocks_found.to_string(),
            ""
        ),
    );
    format!(
        "{intro}{cards}{ehash}{}{}{}{}{}",
        workers(a),
        rejected(a),
        epochs(a),
        blocks(a),
        quotes(a)
    )
}

/// The content of a page that could not show a miner: why, escaped.
pub fn problem(title: &str, detail: &str) -> String {
    format!(
        r#"<section id="problem"><h2>{}</h2><p>{}</p><p><a href="/">Back to the pool's page</a></p></section>"#,
        html::escape(title),
        html::escape(detail)
    )
}
