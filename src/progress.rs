//! Progress bars (work in progress).
