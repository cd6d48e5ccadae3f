//! Client of the template provider (Template Distribution over Noise). Feeds the
//! [`JobSource`], forwards block solutions, and when the provider goes away keeps retrying with
//! back-off while miners stay connected on their current jobs.

use std::{sync::Arc, time::Duration};

use common_messages_sv2::{Protocol, SetupConnectionOwned};
use hashpool_sv2_io::{decode_frame, spawn_reader, str0255, Backoff, SendError, Sv2Message};
use parsers_sv2::{AnyMessageOwned, CommonMessagesOwned, TemplateDistributionOwned};
use stratum_apps::{
    coinbase_output_constraints::coinbase_output_constraints_message,
    network_helpers::{connect_with_noise, noise_stream::NoiseTcpWriteHalf},
};
use template_distribution_sv2::SubmitSolutionOwned;
use tokio::{net::TcpStream, sync::mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{config::TemplateProviderSettings, job_source::JobSource, stats::PoolStats};

#[derive(Debug, thiserror::Error)]
enum ProviderError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("noise handshake: {0:?}")]
    Noise(stratum_apps::network_helpers::Error),
    #[error("frame: {0}")]
    Frame(#[from] hashpool_sv2_io::FrameError),
    #[error("connection closed")]
    Closed,
    #[error("cannot send: {0}")]
    Send(#[from] SendError),
    #[error("setup refused: {0}")]
    SetupRefused(String),
    #[error("unexpected message: {0}")]
    Unexpected(String),
}

/// Runs until `shutdown`: connect, set up, receive templates; on any failure wait and retry.
pub async fn run(
    settings: TemplateProviderSettings,
    jobs: Arc<JobSource>,
    mut solutions: mpsc::Receiver<SubmitSolutionOwned>,
    stats: Arc<PoolStats>,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new(
        Duration::from_millis(settings.reconnect_initial_ms),
        Duration::from_millis(settings.reconnect_max_ms),
    );
    loop {
        let result = tokio::select! {
            r = session(&settings, &jobs, &mut solutions, &stats, &mut backoff) => r,
            _ = shutdown.cancelled() => return,
        };
        stats.set_provider_connected(false);
        jobs.on_provider_lost();
        // Solutions name templates of the lost session: a new session cannot connect them.
        while let Ok(s) = solutions.try_recv() {
            warn!(
                template_id = s.template_id,
                "dropping a block solution: its template provider session ended"
            );
        }
        let delay = backoff.next_delay();
        match result {
            Ok(()) => info!("template provider session ended"),
            Err(e) => warn!(
                address = %settings.address,
                retry_in_ms = delay.as_millis() as u64,
                "template provider unavailable: {e}"
            ),
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn session(
    settings: &TemplateProviderSettings,
    jobs: &JobSource,
    solutions: &mut mpsc::Receiver<SubmitSolutionOwned>,
    stats: &PoolStats,
    backoff: &mut Backoff,
) -> Result<(), ProviderError> {
    let stream = tokio::time::timeout(
        stratum_apps::network_helpers::TCP_CONNECT_TIMEOUT,
        TcpStream::connect(settings.address),
    )
    .await
    .map_err(|_| ProviderError::Connect(std::io::ErrorKind::TimedOut.into()))?
    .map_err(ProviderError::Connect)?;
    let noise = connect_with_noise(stream, settings.authority_public_key)
        .await
        .map_err(ProviderError::Noise)?;
    let (reader, mut writer) = noise.into_split();
    let mut frames = spawn_reader(reader, 64);

    send(
        &mut writer,
        CommonMessagesOwned::SetupConnection(setup_connection()),
    )
    .await?;
    match next_message(&mut frames).await? {
        AnyMessageOwned::Common(CommonMessagesOwned::SetupConnectionSuccess(_)) => {}
        AnyMessageOwned::Common(CommonMessagesOwned::SetupConnectionError(e)) => {
            return Err(ProviderError::SetupRefused(hashpool_sv2_io::text(
                &e.error_code,
            )));
        }
        other => return Err(ProviderError::Unexpected(other.to_string())),
    }
    let constraints = coinbase_output_constraints_message(jobs.reward_outputs_template());
    send(
        &mut writer,
        TemplateDistributionOwned::CoinbaseOutputConstraints(constraints),
    )
    .await?;
    info!(address = %settings.address, "connected to the template provider");
    stats.set_provider_connected(true);
    backoff.reset();

    loop {
        tokio::select! {
            frame = frames.recv() => {
                let mut frame = match frame {
                    Some(Ok(f)) => f,
                    _ => return Err(ProviderError::Closed),
                };
                match decode_frame(&mut frame, &[])?.1 {
                    AnyMessageOwned::TemplateDistribution(TemplateDistributionOwned::NewTemplate(t)) => {
                        debug!(template_id = t.template_id, future = t.future_template, "new template");
                        jobs.on_new_template(t);
                    }
                    AnyMessageOwned::TemplateDistribution(TemplateDistributionOwned::SetNewPrevHash(p)) => {
                        debug!(template_id = p.template_id, "new prev hash");
                        jobs.on_set_new_prev_hash(p);
                    }
                    other => debug!("ignoring template provider message {other}"),
                }
            }
            solution = solutions.recv() => {
                let Some(solution) = solution else { return Ok(()) };
                info!(template_id = solution.template_id, "submitting block solution");
                send(&mut writer, TemplateDistributionOwned::SubmitSolution(solution)).await?;
            }
        }
    }
}

fn setup_connection() -> SetupConnectionOwned {
    let s = str0255;
    SetupConnectionOwned {
        protocol: Protocol::TemplateDistributionProtocol,
        min_version: 2,
        max_version: 2,
        flags: 0,
        endpoint_host: s("0.0.0.0"),
        endpoint_port: 0,
        vendor: s("hashpool"),
        hardware_version: s("pool"),
        firmware: s(env!("CARGO_PKG_VERSION")),
        device_id: s("pool"),
    }
}

async fn next_message(
    frames: &mut hashpool_sv2_io::IncomingFrames,
) -> Result<AnyMessageOwned, ProviderError> {
    match frames.recv().await {
        Some(Ok(mut f)) => Ok(decode_frame(&mut f, &[])?.1),
        _ => Err(ProviderError::Closed),
    }
}

async fn send(writer: &mut NoiseTcpWriteHalf, msg: impl Sv2Message) -> Result<(), ProviderError> {
    Ok(hashpool_sv2_io::send(writer, msg).await?)
}
