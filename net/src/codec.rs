//! Length-prefixed frames for libp2p request-response, with the size limit enforced while reading.

use std::io;

use bytes::Bytes;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;

use crate::pool::{PoolBuf, POOL_MIN};
use crate::wire::{WireError, MAX_MESSAGE};
use crate::{OLD_PROTOCOLS, PROTOCOL};

/// Oversized requests up to this many bytes are read and discarded so the sender gets an error
/// response; larger ones reset the stream.
const MAX_DRAIN: usize = 16 * MAX_MESSAGE;

/// Frames payloads as `u32 LE length` + bytes. Decoding of the payload happens above this layer.
#[derive(Clone, Default)]
pub(crate) struct FrameCodec;

/// A payload as pieces written back to back; a received payload arrives as one piece.
pub(crate) type Frame = Vec<Bytes>;

async fn read_len<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<usize> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    Ok(u32::from_le_bytes(len) as usize)
}

async fn read_body<T: AsyncRead + Unpin + Send>(io: &mut T, len: usize) -> io::Result<Bytes> {
    if len >= POOL_MIN {
        let mut buf = PoolBuf::take(len);
        io.read_exact(buf.as_mut()).await?;
        return Ok(buf.freeze());
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(Bytes::from(buf))
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(io: &mut T, parts: &[Bytes]) -> io::Result<()> {
    let len: usize = parts.iter().map(Bytes::len).sum();
    if len > MAX_MESSAGE {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, WireError::TooLarge(len)));
    }
    io.write_all(&(len as u32).to_le_bytes()).await?;
    for part in parts {
        io.write_all(part).await?;
    }
    io.close().await
}

impl libp2p::request_response::Codec for FrameCodec {
    type Protocol = StreamProtocol;
    /// `Err` carries a request that broke a limit; the server answers it with an error response.
    type Request = Result<Frame, WireError>;
    type Response = Bytes;

    async fn read_request<T>(&mut self, protocol: &StreamProtocol, io: &mut T) -> io::Result<Self::Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        let len = read_len(io).await?;
        if protocol.as_ref() != PROTOCOL {
            // An older client: read its request away (bounded) and answer with a refusal.
            if len > MAX_DRAIN {
                return Err(io::Error::new(io::ErrorKind::InvalidData, WireError::TooLarge(len)));
            }
            futures::io::copy(&mut io.take(len as u64), &mut futures::io::sink()).await?;
            return Ok(Err(WireError::OldProtocol(protocol.to_string())));
        }
        if len > MAX_MESSAGE {
            if len > MAX_DRAIN {
                return Err(io::Error::new(io::ErrorKind::InvalidData, WireError::TooLarge(len)));
            }
            let mut sink = futures::io::sink();
            futures::io::copy(&mut io.take(len as u64), &mut sink).await?;
            return Ok(Err(WireError::TooLarge(len)));
        }
        Ok(Ok(vec![read_body(io, len).await?]))
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Bytes>
    where
        T: AsyncRead + Unpin + Send,
    {
        let len = read_len(io).await?;
        if len > MAX_MESSAGE {
            return Err(io::Error::new(io::ErrorKind::InvalidData, WireError::TooLarge(len)));
        }
        read_body(io, len).await
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, req: Self::Request) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let frame = req.map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        write_frame(io, &frame).await
    }

    async fn write_response<T>(&mut self, protocol: &StreamProtocol, io: &mut T, res: Bytes) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let old = OLD_PROTOCOLS.iter().find(|(name, _)| *name == protocol.as_ref());
        match old {
            // The refusal an older client gets carries its own version byte (the error layout
            // is the same), so it can show the reason instead of a decoding error.
            Some(&(_, version)) if !res.is_empty() => {
                let mut bytes = res.to_vec();
                bytes[0] = version;
                write_frame(io, &[Bytes::from(bytes)]).await
            }
            _ => write_frame(io, &[res]).await,
        }
    }
}
