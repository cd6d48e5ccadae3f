use binary_sv2::Seq064KOwned;
use extensions_sv2::{
    RequestExtensionsErrorOwned, RequestExtensionsOwned, RequestExtensionsSuccessOwned,
};
use parsers_sv2::{AnyMessageOwned, ExtensionsNegotiationOwned, ExtensionsOwned};

use crate::{Connection, ConnectionError};

/// How a server answered RequestExtensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Negotiated {
    /// The extensions both ends use from now on.
    Agreed(Vec<u16>),
    Refused {
        unsupported: Vec<u16>,
        required: Vec<u16>,
    },
}

fn seq(mut v: Vec<u16>) -> Seq064KOwned<u16> {
    // A request decoded from the wire holds fewer than 65,536 extensions, and so does any
    // subset of it; the cut only makes that visible.
    v.truncate(u16::MAX as usize);
    Seq064KOwned::new(v).expect("at most 65,535 items fit a Seq064K")
}

/// The server's answer to `request`: the requested extensions it `offers` are agreed, unless
/// one it `requires` was not requested or none was agreed. Returns the reply and, when agreed,
/// the extensions in use.
pub fn answer_extensions(
    request: RequestExtensionsOwned,
    offers: &[u16],
    requires: &[u16],
) -> (ExtensionsOwned, Option<Vec<u16>>) {
    let requested = request.requested_extensions.into_inner();
    let (agreed, unsupported): (Vec<u16>, Vec<u16>) =
        requested.iter().partition(|e| offers.contains(e));
    let missing = requires.iter().any(|r| !requested.contains(r));
    let reply = if agreed.is_empty() || missing {
        ExtensionsNegotiationOwned::RequestExtensionsError(RequestExtensionsErrorOwned {
            request_id: request.request_id,
            unsupported_extensions: seq(unsupported),
            required_extensions: seq(requires.to_vec()),
        })
    } else {
        ExtensionsNegotiationOwned::RequestExtensionsSuccess(RequestExtensionsSuccessOwned {
            request_id: request.request_id,
            supported_extensions: seq(agreed.clone()),
        })
    };
    let agreed = (!agreed.is_empty() && !missing).then_some(agreed);
    (ExtensionsOwned::ExtensionsNegotiation(reply), agreed)
}

impl Connection {
    /// Client side: asks for `extensions` and waits for the answer.
    pub async fn request_extensions(
        &mut self,
        extensions: &[u16],
    ) -> Result<Negotiated, ConnectionError> {
        let request = RequestExtensionsOwned {
            request_id: 1,
            requested_extensions: seq(extensions.to_vec()),
        };
        self.send(ExtensionsOwned::ExtensionsNegotiation(
            ExtensionsNegotiationOwned::RequestExtensions(request),
        ))
        .await?;
        match self.recv_message().await? {
            AnyMessageOwned::Extensions(ExtensionsOwned::ExtensionsNegotiation(
                ExtensionsNegotiationOwned::RequestExtensionsSuccess(s),
            )) => Ok(Negotiated::Agreed(s.supported_extensions.into_inner())),
            AnyMessageOwned::Extensions(ExtensionsOwned::ExtensionsNegotiation(
                ExtensionsNegotiationOwned::RequestExtensionsError(e),
            )) => Ok(Negotiated::Refused {
                unsupported: e.unsupported_extensions.into_inner(),
                required: e.required_extensions.into_inner(),
            }),
            other => Err(ConnectionError::Protocol(format!(
                "RequestExtensions answered with {other}"
            ))),
        }
    }

    /// Client side, for an extension the client can do without: true when the server agreed
    /// to `extension`; a refusal is logged and the client goes on without it.
    pub async fn try_extension(&mut self, extension: u16) -> Result<bool, ConnectionError> {
        match self.request_extensions(&[extension]).await? {
            Negotiated::Agreed(agreed) => Ok(agreed.contains(&extension)),
            Negotiated::Refused { .. } => {
                tracing::warn!(
                    extension = format_args!("{extension:#06x}"),
                    "the server does not offer the extension: going on without it"
                );
                Ok(false)
            }
        }
    }

    /// Server side: the next message must be RequestExtensions; answers it
    /// ([`answer_extensions`]) and returns the agreed extensions, or `Refused` once the refusal
    /// is sent.
    pub async fn expect_extensions(
        &mut self,
        offers: &[u16],
        requires: &[u16],
    ) -> Result<Vec<u16>, ConnectionError> {
        let request = match self.recv_message().await? {
            AnyMessageOwned::Extensions(ExtensionsOwned::ExtensionsNegotiation(
                ExtensionsNegotiationOwned::RequestExtensions(r),
            )) => r,
            other => {
                return Err(ConnectionError::Protocol(format!(
                    "expected RequestExtensions, got {other}"
                )))
            }
        };
        let (reply, agreed) = answer_extensions(request, offers, requires);
        self.send(reply).await?;
        agreed.ok_or_else(|| {
            ConnectionError::Refused(format!(
                "required extensions {requires:#06x?} not requested"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(extensions: Vec<u16>) -> RequestExtensionsOwned {
        RequestExtensionsOwned {
            request_id: 7,
            requested_extensions: seq(extensions),
        }
    }

    fn success(reply: &ExtensionsOwned) -> Option<Vec<u16>> {
        match reply {
            ExtensionsOwned::ExtensionsNegotiation(
                ExtensionsNegotiationOwned::RequestExtensionsSuccess(s),
            ) => Some(s.supported_extensions.clone().into_inner()),
            _ => None,
        }
    }

    #[test]
    fn agrees_to_what_is_offered_and_refuses_the_rest() {
        // (requested, offered, required, agreed)
        type Case = (Vec<u16>, &'static [u16], &'static [u16], Option<Vec<u16>>);
        let cases: &[Case] = &[
            (vec![0x4861], &[0x4861], &[], Some(vec![0x4861])),
            (vec![0x4861, 0x0002], &[0x4861], &[], Some(vec![0x4861])),
            (vec![0x0002], &[0x4861], &[], None),
            (vec![], &[0x4861], &[], None),
            (vec![0x0002], &[0x4861], &[0x4861], None),
            (vec![0x4861], &[0x4861], &[0x4861], Some(vec![0x4861])),
        ];
        for (requested, offers, requires, expected) in cases {
            let (reply, agreed) = answer_extensions(request(requested.clone()), offers, requires);
            assert_eq!(&agreed, expected, "{requested:?} against {offers:?}");
            assert_eq!(&success(&reply), expected, "reply to {requested:?}");
        }
    }
}
