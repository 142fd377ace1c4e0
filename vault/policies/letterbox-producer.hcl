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
