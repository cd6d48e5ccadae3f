//! A scripted mint for the pool's side of the mint link: it connects, negotiates the
//! extension, proves its key exactly as the real mint does, records every quote request and,
//! if told to, answers each with a quote, or refuses the first few for good.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use anyhow::bail;
use common_messages_sv2::Protocol;
use ext_mint_quote::{
    sign_challenge, MintQuoteErrorOwned, MintQuoteMessage, MintQuoteRequestOwned,
    MintQuoteResponseOwned, EXTENSION_TYPE,
};
use hashpool_sv2_io::{decode_extension, extension_frame, Dial, Negotiated};
use tokio_util::sync::CancellationToken;

pub struct FakeMint {
    pub requests: Arc<Mutex<Vec<MintQuoteRequestOwned>>>,
    /// Every answer sent, in order, with the request id it answered (a resent request is
    /// answered again, as a real mint does: with the same quote or the same refusal).
    pub answers: Arc<Mutex<Vec<AnswerSent>>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// How the fake mint treats quote requests.
#[derive(Debug, Clone)]
pub enum Answers {
    /// Records them, answers none.
    Never,
    /// A quote for each.
    Quote,
    /// `MintQuoteError` with `code` for the first `n` distinct request ids (again for each
    /// resend of those), a quote for every later one.
    RefuseFirst { n: usize, code: String },
}

/// An answer and the request id it answered.
pub type AnswerSent = ([u8; 32], Answer);

/// One answer the fake mint sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Quote { quote_id: String, amount: u64 },
    Refused { code: String },
}

impl FakeMint {
    /// Connects to the pool's mint link and authenticates with `mint_secret`. Fails if the pool
    /// closes the link instead of sending it requests.
    pub async fn connect(
        address: std::net::SocketAddr,
        mint_secret: [u8; 32],
        answer: bool,
    ) -> anyhow::Result<Self> {
        let answers = if answer {
            Answers::Quote
        } else {
            Answers::Never
        };
        Self::connect_with(address, mint_secret, answers).await
    }

    /// As [`FakeMint::connect`], answering as `answers` says.
    pub async fn connect_with(
        address: std::net::SocketAddr,
        mint_secret: [u8; 32],
        answers: Answers,
    ) -> anyhow::Result<Self> {
        // The same connection layer and challenge signing as the real mint.
        let dial = Dial::new(
            address,
            Some(crate::public_key()),
            Protocol::MiningProtocol,
            "fake-mint",
        );
        let (mut c, _) = hashpool_sv2_io::dial(&dial).await?;
        match c.request_extensions(&[EXTENSION_TYPE]).await? {
            Negotiated::Agreed(_) => {}
            other => bail!("extension refused: {other:?}"),
        }
        let MintQuoteMessage::Challenge(challenge) = c.recv_extension().await? else {
            bail!("expected the challenge");
        };
        let auth = sign_challenge(&challenge, &mint_secret)?;
        c.send_extension(&MintQuoteMessage::Auth(auth)).await?;

        let requests = Arc::new(Mutex::new(Vec::new()));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let (r, a, s) = (requests.clone(), sent.clone(), stop.clone());
        let task = tokio::spawn(async move {
            // The answer each request id got first: a resend gets the same.
            let mut decided: HashMap<[u8; 32], Answer> = HashMap::new();
            loop {
                let frame = tokio::select! {
                    f = c.recv_frame() => f,
                    _ = s.cancelled() => return,
                };
                let Ok(mut frame) = frame else { return };
                let Some(Ok(MintQuoteMessage::Request(req))) = extension_frame(&mut frame)
                    .as_ref()
                    .and_then(decode_extension)
                else {
                    continue;
                };
                r.lock().unwrap().push(req.clone());
                let id = req.request_id.to_array();
                let seen = decided.len();
                let answer = match (&answers, decided.get(&id)) {
                    (Answers::Never, _) => continue,
                    (_, Some(first)) => first.clone(),
                    (Answers::RefuseFirst { n, code }, None) if seen < *n => {
                        Answer::Refused { code: code.clone() }
                    }
                    (Answers::Quote | Answers::RefuseFirst { .. }, None) => {
                        let hex: String = id[..8].iter().map(|b| format!("{b:02x}")).collect();
                        Answer::Quote {
                            quote_id: format!("quote-{hex}"),
                            amount: req.amount,
                        }
                    }
                };
                decided.insert(id, answer.clone());
                let message = match &answer {
                    Answer::Quote { quote_id, amount } => {
                        MintQuoteMessage::Response(MintQuoteResponseOwned {
                            request_id: req.request_id.clone(),
                            quote_id: hashpool_sv2_io::str0255(quote_id),
                            amount: *amount,
                        })
                    }
                    Answer::Refused { code } => MintQuoteMessage::Error(MintQuoteErrorOwned {
                        request_id: req.request_id.clone(),
                        error_code: hashpool_sv2_io::str0255(code),
                        message: hashpool_sv2_io::str0255("refused by the fake mint"),
                    }),
                };
                a.lock().unwrap().push((id, answer));
                if c.send_extension(&message).await.is_err() {
                    return;
                }
            }
        });
        Ok(Self {
            requests,
            answers: sent,
            stop,
            task,
        })
    }

    /// The pool closed the link (e.g. it refused the mint's key).
    pub fn is_closed(&self) -> bool {
        self.task.is_finished()
    }

    pub fn request_count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    /// Disconnects.
    pub async fn close(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// The secret of the key local runs and tests configure as the mint's.
pub fn mint_secret() -> [u8; 32] {
    crate::secret_key().into_bytes()
}
