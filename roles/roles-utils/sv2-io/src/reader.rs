use codec_sv2::SerializedFrame;
use stratum_apps::network_helpers::{noise_stream::NoiseTcpReadHalf, Error};
use tokio::sync::mpsc;

/// Frames read from one connection. The stream ends after the first error, which is delivered.
pub type IncomingFrames = mpsc::Receiver<Result<SerializedFrame, Error>>;

/// Reads frames on a task of its own: `read_frame` is not cancellation-safe, so it must never
/// sit in a `select!` arm that can be dropped. Dropping the receiver stops the task.
pub fn spawn_reader(mut reader: NoiseTcpReadHalf, capacity: usize) -> IncomingFrames {
    let (tx, rx) = mpsc::channel(capacity);
    tokio::spawn(async move {
        loop {
            let result = tokio::select! {
                r = reader.read_frame() => r,
                _ = tx.closed() => return,
            };
            let failed = result.is_err();
            if tx.send(result).await.is_err() || failed {
                return;
            }
        }
    });
    rx
}

/// Frames read by the task that handles them, for a server holding many connections: no reader
/// task and no frame channel per connection (less memory, one wake-up per burst instead of two).
pub struct FrameReader {
    inner: NoiseTcpReadHalf,
}

impl FrameReader {
    pub fn new(inner: NoiseTcpReadHalf) -> Self {
        Self { inner }
    }

    /// The next frame. Cancellation-safe, though stratum-apps documents `read_frame` as not:
    /// the pinned 0.8.0 keeps a partly read frame's bytes and their count in the read half
    /// between calls and decodes a frame only once it is whole, so a cancelled call loses
    /// nothing. `tests/frame_reader.rs` cancels reads mid-frame to hold it to that.
    pub async fn next(&mut self) -> Result<SerializedFrame, Error> {
        self.inner.read_frame().await
    }

    /// A frame whose bytes have already arrived, without waiting; `None` when there is none
    /// yet. The first attempt may only complete a frame's header (the read half then asks
    /// for the payload), hence the second.
    pub fn try_next(&mut self) -> Option<Result<SerializedFrame, Error>> {
        for _ in 0..2 {
            match self.inner.try_read_frame() {
                Ok(Some(frame)) => return Some(Ok(frame)),
                Ok(None) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
        None
    }
}
