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
