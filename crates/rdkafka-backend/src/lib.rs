//! The librdkafka backend (in progress).
