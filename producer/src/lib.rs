//! letterbox-producer: the HTTP ingress.
//!
//! A request's documents are checked and extracted in memory (`request`), published as one job
//! with publisher confirms, and the handler waits for the worker's reply on this process's reply
//! queue (`letterbox_rabbitmq::JobSubmitter`). Every refusal is a JSON error (`error`).

mod app;
mod error;
mod metrics;
pub mod openapi;
mod request;
mod settings;
pub mod web;
pub mod webhook;

pub use app::Application;
pub use error::ApiError;
pub use settings::ProducerSettings;
