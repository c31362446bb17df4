//! SQL procedures (work in progress).
