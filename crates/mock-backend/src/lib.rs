//! In-memory backend (in progress).
