# letterbox-producer, the HTTP ingress.
# Reads client token records (hashes) to check requests, and gets data keys to seal job bodies.
# It cannot read the LLM key.

path "secret/metadata/letterbox/tokens/*" {
  capabilities = ["list"]
}

path "secret/data/letterbox/tokens/*" {
  capabilities = ["read"]
}

path "transit/datakey/plaintext/letterbox-payload" {
  capabilities = ["update"]
}

path "transit/decrypt/letterbox-payload" {
  capabilities = ["update"]
}

# The key that signs webhook deliveries (letterbox-admin setup creates it).
path "secret/data/letterbox/webhook" {
  capabilities = ["read"]
}
