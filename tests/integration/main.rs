//! Integration tests of the whole pipeline against the real RabbitMQ and the real OpenBao/Vault.
//! Run them with `script/test`, which starts both.

mod admin;
mod api;
mod auth;
mod capacity;
mod cli;
mod dead_letters;
mod documents;
mod helpers;
mod hostile;
mod metrics_format;
mod mutations;
mod openapi;
mod outages;
mod payloads;
mod privacy;
mod provider_faults;
mod providers;
mod secrets;
mod services;
mod streaming;
mod tls;
mod transport;
mod web;
mod webhooks;
mod workers;
