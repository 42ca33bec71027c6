"""Files -> DesiredState: located YAML, JSON Schemas, cross-checks and content fingerprints.

The only stage that reads the user's files; it never executes them."""
