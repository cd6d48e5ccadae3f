use std::{net::SocketAddr, time::Duration};

use common_messages_sv2::{
    Protocol, SetupConnectionErrorOwned, SetupConnectionOwned, SetupConnectionSuccess,
};
use parsers_sv2::{AnyMessageOwned, CommonMessagesOwned};
use stratum_apps::{
    key_utils::{Secp256k1PublicKey, Secp256k1SecretKey},
    network_helpers::accept_noise_connection,
};
use tokio::net::TcpStream;

use crate::{str0255, Connection, ConnectionError};

/// The key pair and certificate validity a server proves itself with in the Noise handshake.
#[derive(Debug, Clone, Copy)]
pub struct ServerIdentity {
    pub public_key: Secp256k1PublicKey,
    pub secret_key: Secp256k1SecretKey,
    pub cert_validity_secs: u64,
}

/// The Noise handshake of an accepted connection, within `timeout`.
pub async fn accept(
    stream: TcpStream,
    peer: SocketAddr,
    identity: &ServerIdentity,
    capacity: usize,
    timeout: Duration,
) -> Result<Connection, ConnectionError> {
    let noise = tokio::time::timeout(
        timeout,
        accept_noise_connection(
            stream,
            identity.public_key,
            identity.secret_key,
            identity.cert_validity_secs,
        ),
    )
    .await
    .map_err(|_| ConnectionError::Timeout("in the Noise handshake"))?
    .map_err(ConnectionError::Noise)?;
    Ok(Connection::new(noise, peer, capacity))
}

/// The answer to a SetupConnection for `protocol` (version 2, no optional features): the
/// success message, or the error code to refuse it with ([`setup_refusal`]).
pub fn answer_setup(
    setup: &SetupConnectionOwned,
    protocol: Protocol,
) -> Result<SetupConnectionSuccess, &'static str> {
    if setup.protocol != protocol {
        Err("unsupported-protocol")
    } else if setup.min_version > 2 || setup.max_version < 2 {
        Err("protocol-version-mismatch")
    } else {
        Ok(SetupConnectionSuccess {
            used_version: 2,
            flags: 0,
        })
    }
}

/// The SetupConnection.Error for `code`.
pub fn setup_refusal(code: &str) -> CommonMessagesOwned {
    CommonMessagesOwned::SetupConnectionError(SetupConnectionErrorOwned {
        flags: 0,
        error_code: str0255(code),
    })
}

impl Connection {
    /// Waits for the peer's SetupConnection and answers it ([`answer_setup`]); a refusal is
    /// sent before the error returns.
    pub async fn expect_setup(
        &mut self,
        protocol: Protocol,
    ) -> Result<SetupConnectionOwned, ConnectionError> {
        let setup = match self.recv_message().await? {
            AnyMessageOwned::Common(CommonMessagesOwned::SetupConnection(s)) => s,
            other => {
                return Err(ConnectionError::Protocol(format!(
                    "expected SetupConnection, got {other}"
                )))
            }
        };
        match answer_setup(&setup, protocol) {
            Ok(success) => {
                self.send(CommonMessagesOwned::SetupConnectionSuccess(success))
                    .await?;
                Ok(setup)
            }
            Err(code) => {
                self.send(setup_refusal(code)).await?;
                Err(ConnectionError::Refused(format!("SetupConnection: {code}")))
            }
        }
    }
}
