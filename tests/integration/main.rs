//! Integration tests of the whole pipeline against the real RabbitMQ and the real OpenBao/Vault.
//! Run them with `script/test`, which starts both.

mod admin;
mod dead_letters;
mod api;
mod auth;
mod documents;
mod helpers;
mod hostile;
mod outages;
mod payloads;
mod privacy;
mod secrets;
mod services;
mod tls;
mod transport;
mod workers;
