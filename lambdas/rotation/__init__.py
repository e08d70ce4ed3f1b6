"""Domain logic of the access-key rotation: plain functions, AWS clients passed in, no environment reads."""
