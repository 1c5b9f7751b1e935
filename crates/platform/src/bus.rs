//! The platform's event bus over `/api/v1/bus`.
