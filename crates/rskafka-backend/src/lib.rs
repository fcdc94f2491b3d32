//! The pure-Rust rskafka backend (in progress).
