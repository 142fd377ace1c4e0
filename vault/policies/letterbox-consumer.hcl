# letterbox-consumer, a worker.
# Reads the LLM key (and the fallback provider's), unwraps the data keys of the jobs it takes
# (and seals each reply under its job's key, so it never makes a data key of its own), and reads
# operators' (monitor and admin) token records to guard its /metrics. It cannot read client
# (submit) token records.

path "secret/data/letterbox/llm" {
  capabilities = ["read"]
}

# The fallback provider's key, when LETTERBOX_LLM_FALLBACK_KEY_PATH names this path.
path "secret/data/letterbox/llm-fallback" {
  capabilities = ["read"]
}

path "secret/metadata/letterbox/tokens/monitor" {
  capabilities = ["list"]
}

path "secret/metadata/letterbox/tokens/admin" {
  capabilities = ["list"]
}

path "secret/data/letterbox/tokens/monitor/*" {
  capabilities = ["read"]
}

path "secret/data/letterbox/tokens/admin/*" {
  capabilities = ["read"]
}

path "transit/decrypt/letterbox-payload" {
  capabilities = ["update"]
}
