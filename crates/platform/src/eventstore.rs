//! The platform's event store over `/api/v1/streams`.
