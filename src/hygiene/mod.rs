//! What a verdict does to a request and its response, besides blocking: cookies, query
//! parameters, Referer, client hints, `Sec-GPC`/`DNT` on the way out; `Set-Cookie`, `ETag` and
//! client-hint requests on the way back. Each cleaner reads the request's [`Exchange`] and the
//! policy's lists, and says what it took off as [`Stripped`]. Whether the page's site is in
//! shopping mode is read from the Exchange (the switches are the person's choices).
//!
//! [`Exchange`]: crate::exchange::Exchange
//! [`Stripped`]: crate::exchange::Stripped

pub mod identifier;
pub mod request;
pub mod response;
