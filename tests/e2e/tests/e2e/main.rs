//! Every end-to-end test in one binary: each test file linked the whole stack on its own, which
//! cost minutes of linking and gigabytes of disk per file.

mod bad_input;
mod browser;
mod cashu_wallets;
mod crash;
mod crash_withdrawal;
mod deployment;
mod dns_upstream;
mod epochs;
mod extended_channel;
mod hostile_miner;
mod jd_client;
mod job_declaration;
mod ledger;
mod locking_key;
mod metrics;
mod miner_page;
mod mining;
mod mint_security;
mod minting;
mod monitoring;
mod public_translator;
mod quotes;
mod redemption;
mod settlement;
mod share_load;
mod stats;
mod supervisor;
mod template_provider;
mod translator;
mod translator_bad_input;
mod translator_limits;
mod translator_upstreams;
mod wallet_cli;
mod web;
mod withdrawal;
