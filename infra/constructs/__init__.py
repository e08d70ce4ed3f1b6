"""One construct per logical unit; `infra.stack` composes them."""
