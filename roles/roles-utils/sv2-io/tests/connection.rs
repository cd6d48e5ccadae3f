//! Both ends of the connection layer against each other on 127.0.0.1: dial, accept, setup,
//! extension negotiation, extension messages, and the refusals on the way.

use std::time::Duration;

use common_messages_sv2::Protocol;
use ext_mint_quote::{new_challenge, MintQuoteMessage, EXTENSION_TYPE};
use hashpool_sv2_io::{accept, dial, ConnectionError, Dial, Negotiated, ServerIdentity};
use stratum_apps::key_utils::{Secp256k1PublicKey, Secp256k1SecretKey};
use tokio::net::TcpListener;

const SECRET: &str = "mkDLTBBRxdBv998612qipDYoTK3YUrqLe8uWw7gu3iXbSrn2n";
const PUBLIC: &str = "9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72";

fn identity() -> ServerIdentity {
    ServerIdentity {
        public_key: PUBLIC.parse::<Secp256k1PublicKey>().unwrap(),
        secret_key: SECRET.parse::<Secp256k1SecretKey>().unwrap(),
        cert_validity_secs: 3600,
    }
}

/// A server that accepts one connection, answers setup for `protocol`, offers the mint-quote
/// extension (requiring it when `require`), then sends a challenge.
async fn server(
    protocol: Protocol,
    require: bool,
) -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<Result<(), ConnectionError>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (stream, peer) = listener.accept().await.unwrap();
        let mut conn = accept(stream, peer, &identity(), 16, Duration::from_secs(10)).await?;
        conn.expect_setup(protocol).await?;
        let required: &[u16] = if require { &[EXTENSION_TYPE] } else { &[] };
        let agreed = conn.expect_extensions(&[EXTENSION_TYPE], required).await?;
        assert_eq!(agreed, vec![EXTENSION_TYPE]);
        conn.send_extension(&MintQuoteMessage::Challenge(new_challenge()))
            .await
    });
    (address, task)
}

#[tokio::test]
async fn dial_sets_up_negotiates_and_carries_extension_messages() {
    let (address, server) = server(Protocol::MiningProtocol, true).await;
    let options = Dial::new(
        address,
        Some(identity().public_key),
        Protocol::MiningProtocol,
        "test",
    );
    let (mut conn, _flags) = dial(&options).await.unwrap();
    assert_eq!(
        conn.request_extensions(&[EXTENSION_TYPE, 0x0002])
            .await
            .unwrap(),
        Negotiated::Agreed(vec![EXTENSION_TYPE])
    );
    assert!(matches!(
        conn.recv_extension::<MintQuoteMessage>().await.unwrap(),
        MintQuoteMessage::Challenge(_)
    ));
    server.await.unwrap().unwrap();
    // The server is gone: the connection reports it closed.
    assert!(matches!(
        conn.recv_frame().await,
        Err(ConnectionError::Closed)
    ));
}

#[tokio::test]
async fn a_setup_for_another_protocol_is_refused_with_its_code() {
    let (address, server) = server(Protocol::JobDeclarationProtocol, false).await;
    let options = Dial::new(
        address,
        Some(identity().public_key),
        Protocol::MiningProtocol,
        "test",
    );
    match dial(&options).await {
        Err(ConnectionError::Refused(reason)) => {
            assert!(reason.contains("unsupported-protocol"), "{reason}")
        }
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    }
    assert!(matches!(
        server.await.unwrap(),
        Err(ConnectionError::Refused(_))
    ));
}

#[tokio::test]
async fn a_missing_required_extension_is_refused_on_both_ends() {
    let (address, server) = server(Protocol::MiningProtocol, true).await;
    let options = Dial::new(
        address,
        Some(identity().public_key),
        Protocol::MiningProtocol,
        "test",
    );
    let (mut conn, _) = dial(&options).await.unwrap();
    assert_eq!(
        conn.request_extensions(&[0x0002]).await.unwrap(),
        Negotiated::Refused {
            unsupported: vec![0x0002],
            required: vec![EXTENSION_TYPE]
        }
    );
    assert!(matches!(
        server.await.unwrap(),
        Err(ConnectionError::Refused(_))
    ));
}

#[tokio::test]
async fn a_wrong_pinned_key_fails_the_handshake() {
    let (address, _server) = server(Protocol::MiningProtocol, false).await;
    // Another valid key than the server's.
    let other: Secp256k1PublicKey = "9bQHWXsQ2J9TRFTaxRh3KjoxdyLRfWVEy25YHtKF8y8gotLoCZZ"
        .parse()
        .unwrap();
    let options = Dial::new(address, Some(other), Protocol::MiningProtocol, "test");
    assert!(matches!(
        dial(&options).await,
        Err(ConnectionError::Noise(_))
    ));
}

#[tokio::test]
async fn a_host_name_is_resolved_when_dialing() {
    let (address, server) = server(Protocol::MiningProtocol, true).await;
    let by_name: hashpool_sv2_io::HostPort =
        format!("localhost:{}", address.port()).parse().unwrap();
    let options = Dial::new(
        &by_name,
        Some(identity().public_key),
        Protocol::MiningProtocol,
        "test",
    );
    assert_eq!(options.address.to_string(), by_name.to_string());
    let (mut conn, _) = dial(&options).await.unwrap();
    assert!(conn.peer().ip().is_loopback());
    assert_eq!(conn.peer().port(), address.port());
    assert_eq!(
        conn.request_extensions(&[EXTENSION_TYPE]).await.unwrap(),
        Negotiated::Agreed(vec![EXTENSION_TYPE])
    );
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_name_that_does_not_resolve_is_a_connect_error_naming_it() {
    // `.invalid` never resolves (RFC 2606).
    let options = Dial::new(
        "no-such-host.invalid:1"
            .parse::<hashpool_sv2_io::HostPort>()
            .unwrap(),
        Some(identity().public_key),
        Protocol::MiningProtocol,
        "test",
    );
    match dial(&options).await {
        Err(e @ ConnectionError::Resolve { .. }) => {
            assert!(e.to_string().contains("no-such-host.invalid:1"), "{e}")
        }
        other => panic!("expected a resolve error, got {:?}", other.map(|_| ())),
    }
    // A refused connection names the address too.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed = listener.local_addr().unwrap();
    drop(listener);
    let options = Dial::new(
        closed,
        Some(identity().public_key),
        Protocol::MiningProtocol,
        "test",
    );
    match dial(&options).await {
        Err(e @ ConnectionError::Connect { .. }) => {
            assert!(e.to_string().contains(&closed.to_string()), "{e}")
        }
        other => panic!("expected a connect error, got {:?}", other.map(|_| ())),
    }
}
