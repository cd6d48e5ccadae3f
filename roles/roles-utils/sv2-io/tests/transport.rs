//! The buffered server transport (`accept_transport`) against stratum-apps' client side. Its
//! reader sits in a `select!` next to timers and other events, so a read may be cancelled at
//! any point of a frame: frames reach the server one byte per TCP write, every read is
//! cancelled after two polls, and each frame must still arrive whole, in order. Its writer
//! sends queued frames together.

use std::time::Duration;

use hashpool_sv2_io::{
    accept_transport, connect_noise, decode_frame, encode, encode_raw, send, setup_refusal, text,
    FrameReader, FrameWriter, ServerIdentity,
};
use parsers_sv2::{AnyMessageOwned, CommonMessagesOwned};
use stratum_apps::key_utils::{Secp256k1PublicKey, Secp256k1SecretKey};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

const SECRET: &str = "mkDLTBBRxdBv998612qipDYoTK3YUrqLe8uWw7gu3iXbSrn2n";
const PUBLIC: &str = "9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72";
const FRAMES: usize = 40;
const MAX_PAYLOAD: usize = 1 << 17;

fn identity() -> ServerIdentity {
    ServerIdentity {
        public_key: PUBLIC.parse::<Secp256k1PublicKey>().unwrap(),
        secret_key: SECRET.parse::<Secp256k1SecretKey>().unwrap(),
        cert_validity_secs: 3600,
    }
}

/// The server side of the next connection on `listener`, handshake done.
async fn serve_one(listener: &TcpListener) -> (FrameReader, FrameWriter) {
    let (stream, _) = listener.accept().await.unwrap();
    accept_transport(stream, &identity(), Duration::from_secs(60), MAX_PAYLOAD)
        .await
        .unwrap()
}

/// The code carried by frame `i`: lengths vary so frames straddle reads differently.
fn code(i: usize) -> String {
    format!("frame-{i}-{}", "x".repeat(i * 7 % 50))
}

/// Forwards `from` to `to` one byte per write, so the reader sees frames in pieces.
async fn trickle(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
) {
    let mut byte = [0u8; 1];
    while let Ok(1) = from.read(&mut byte).await {
        if to.write_all(&byte).await.is_err() {
            return;
        }
        tokio::task::yield_now().await;
    }
    let _ = to.shutdown().await;
}

#[tokio::test]
async fn a_read_cancelled_mid_frame_resumes_where_it_stopped() {
    let server_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server_address = server_listener.local_addr().unwrap();
    let proxy_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_address = proxy_listener.local_addr().unwrap();

    let proxy = tokio::spawn(async move {
        let (client, _) = proxy_listener.accept().await.unwrap();
        let upstream = TcpStream::connect(server_address).await.unwrap();
        client.set_nodelay(true).unwrap();
        upstream.set_nodelay(true).unwrap();
        let (client_read, mut client_write) = client.into_split();
        let (mut upstream_read, upstream_write) = upstream.into_split();
        let down = tokio::spawn(async move {
            let _ = tokio::io::copy(&mut upstream_read, &mut client_write).await;
        });
        trickle(client_read, upstream_write).await;
        let _ = down.await;
    });

    let server = tokio::spawn(async move {
        let (mut frames, _writer) = serve_one(&server_listener).await;
        let (mut codes, mut cancelled) = (Vec::new(), 0usize);
        while codes.len() < FRAMES {
            tokio::select! {
                biased;
                frame = frames.next() => {
                    let mut frame = frame.expect("a whole frame despite the cancellations");
                    match decode_frame(&mut frame, &[]).unwrap().1 {
                        AnyMessageOwned::Common(CommonMessagesOwned::SetupConnectionError(e)) => {
                            codes.push(text(&e.error_code))
                        }
                        other => panic!("unexpected message {other}"),
                    }
                }
                // Ready on its second poll: the read above is dropped wherever it stands.
                _ = tokio::task::yield_now() => cancelled += 1,
            }
        }
        (codes, cancelled)
    });

    let mut client = connect_noise(proxy_address, Some(identity().public_key), 4)
        .await
        .unwrap();
    for i in 0..FRAMES {
        send(client.writer(), setup_refusal(&code(i)))
            .await
            .unwrap();
    }
    let (codes, cancelled) = server.await.unwrap();
    assert_eq!(codes, (0..FRAMES).map(code).collect::<Vec<_>>());
    // Each frame took dozens of one-byte writes: reads were cancelled with frames half read.
    assert!(cancelled > FRAMES, "only {cancelled} reads were cancelled");
    drop(client);
    proxy.await.unwrap();
}

#[tokio::test]
async fn try_next_takes_only_frames_already_arrived() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (checked_tx, checked_rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(async move {
        let (mut frames, _writer) = serve_one(&listener).await;
        // Nothing sent yet (the client waits for this): nothing to take, and no error.
        assert!(frames.try_next().is_none());
        checked_tx.send(()).unwrap();
        let mut codes = Vec::new();
        while codes.len() < 3 {
            // A frame already here is taken at once; otherwise wait for the next.
            let mut frame = match frames.try_next() {
                Some(frame) => frame.unwrap(),
                None => frames.next().await.unwrap(),
            };
            match decode_frame(&mut frame, &[]).unwrap().1 {
                AnyMessageOwned::Common(CommonMessagesOwned::SetupConnectionError(e)) => {
                    codes.push(text(&e.error_code))
                }
                other => panic!("unexpected message {other}"),
            }
        }
        // The peer gone, the reader says so.
        let closed = frames.next().await;
        (codes, closed.is_err())
    });
    let mut client = connect_noise(address, Some(identity().public_key), 4)
        .await
        .unwrap();
    checked_rx.await.unwrap();
    for i in 0..3 {
        send(client.writer(), setup_refusal(&code(i)))
            .await
            .unwrap();
    }
    drop(client);
    let (codes, closed) = server.await.unwrap();
    assert_eq!(codes, (0..3).map(code).collect::<Vec<_>>());
    assert!(closed, "a closed socket is an error, not a frame");
}

#[tokio::test]
async fn queued_frames_go_out_together_and_arrive_in_order() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (_frames, mut writer) = serve_one(&listener).await;
        for i in 0..5 {
            writer
                .queue(encode(setup_refusal(&code(i))).unwrap())
                .unwrap();
        }
        writer.flush().await.unwrap();
        // A frame bigger than the buffer kept between bursts, on its own.
        writer
            .write_frame(encode(setup_refusal(&"y".repeat(255))).unwrap())
            .await
            .unwrap();
        writer
    });
    let mut client = connect_noise(address, Some(identity().public_key), 16)
        .await
        .unwrap();
    let mut codes = Vec::new();
    for _ in 0..6 {
        match client.recv_message().await.unwrap() {
            AnyMessageOwned::Common(CommonMessagesOwned::SetupConnectionError(e)) => {
                codes.push(text(&e.error_code))
            }
            other => panic!("unexpected message {other}"),
        }
    }
    let mut expected: Vec<String> = (0..5).map(code).collect();
    expected.push("y".repeat(255));
    assert_eq!(codes, expected);
    drop(server.await.unwrap());
}

#[tokio::test]
async fn a_frame_longer_than_the_limit_is_refused_while_it_is_read() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut frames, _writer) = serve_one(&listener).await;
        // A frame at the limit is read whole; the one after, eight times longer, is refused.
        let first = frames.next().await.map(|mut f| f.payload().len());
        let second = frames.next().await;
        (first, second.map(|_| ()))
    });
    let mut client = connect_noise(address, Some(identity().public_key), 4)
        .await
        .unwrap();
    for len in [MAX_PAYLOAD, 8 * MAX_PAYLOAD] {
        let frame = encode_raw(0x4861, false, 0x01, &vec![7u8; len]).unwrap();
        // The server may stop reading at the second frame: its write can fail half way.
        let _ = client.send_frame(frame).await;
    }
    let (first, second) = server.await.unwrap();
    assert_eq!(first.unwrap(), MAX_PAYLOAD);
    let err = format!("{:?}", second.unwrap_err());
    assert!(err.contains("PayloadTooLong"), "{err}");
}
