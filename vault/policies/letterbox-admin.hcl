# letterbox-admin, the operators' tool.
# Manages client token records, audits the age of Letterbox's secrets and rotates the payload key.
# It can see the LLM key's metadata (its age) but not its value.

path "secret/data/letterbox/tokens/*" {
  capabilities = ["create", "update", "read"]
}

path "secret/metadata/letterbox/tokens/*" {
  capabilities = ["list", "read", "delete"]
}

path "secret/metadata/letterbox/llm" {
  capabilities = ["read"]
}

path "transit/keys/letterbox-payload" {
  capabilities = ["read"]
}

path "transit/keys/letterbox-payload/rotate" {
  capabilities = ["update"]
}
