//! How a token request reaches the token endpoint: a small trait, so the
//! protocol code does not care which HTTP client carries it.

use std::future::Future;
use std::pin::Pin;

use crate::error::TransportError;

/// A boxed, sendable future, as [`Transport::send`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Sends one HTTP request and reads the whole answer.
///
/// With the default `reqwest` feature, `reqwest::Client` implements it
/// (and is what [`ClientCredentialsBuilder::build`] uses unless told
/// otherwise). Implement it to use another HTTP client, or to test code
/// without a network.
///
/// A transport only moves bytes: a 4xx or 5xx answer is an `Ok` response;
/// an `Err` means no complete answer came back. Timeouts and retries are the
/// source's business, but a transport should bound the size of what it
/// reads.
///
/// [`ClientCredentialsBuilder::build`]: crate::ClientCredentialsBuilder::build
pub trait Transport: Send + Sync + 'static {
    /// Sends `request` and reads the answer.
    fn send(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> BoxFuture<'_, Result<http::Response<Vec<u8>>, TransportError>>;
}

#[cfg(feature = "reqwest")]
mod reqwest_transport {
    use super::{BoxFuture, Transport};
    use crate::error::{Error, TransportError};

    /// The largest answer read. Token answers are a few kilobytes; a
    /// megabyte means something is wrong, and reading on would only waste
    /// memory.
    const MAX_ANSWER_BYTES: usize = 1 << 20;

    impl Transport for reqwest::Client {
        fn send(
            &self,
            request: http::Request<Vec<u8>>,
        ) -> BoxFuture<'_, Result<http::Response<Vec<u8>>, TransportError>> {
            Box::pin(async move {
                let request = reqwest::Request::try_from(request).map_err(classify)?;
                let mut response = self.execute(request).await.map_err(classify)?;
                if response
                    .content_length()
                    .is_some_and(|length| length > MAX_ANSWER_BYTES as u64)
                {
                    return Err(too_large());
                }
                let mut body = Vec::new();
                while let Some(chunk) = response.chunk().await.map_err(classify)? {
                    if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                        return Err(too_large());
                    }
                    body.extend_from_slice(&chunk);
                }
                let mut answer = http::Response::new(body);
                *answer.status_mut() = response.status();
                *answer.headers_mut() = std::mem::take(response.headers_mut());
                Ok(answer)
            })
        }
    }

    fn classify(error: reqwest::Error) -> TransportError {
        if error.is_timeout() {
            TransportError::timeout(error)
        } else if error.is_builder() {
            TransportError::permanent(error)
        } else {
            TransportError::new(error)
        }
    }

    fn too_large() -> TransportError {
        TransportError::permanent(format!(
            "the answer is larger than {MAX_ANSWER_BYTES} bytes"
        ))
    }

    /// The client used when the builder is given none: no redirects (a
    /// token endpoint that redirects would have the credentials resent
    /// elsewhere), rustls, HTTP/2 when the server offers it.
    pub(crate) fn default_client() -> Result<reqwest::Client, Error> {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| Error::Config(format!("cannot build the HTTP client: {error}")))
    }
}

#[cfg(feature = "reqwest")]
pub(crate) use reqwest_transport::default_client;
