"""Thin Lambda handlers, one module per Step Functions state: parse the event, call the domain, return ids."""
