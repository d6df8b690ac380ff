"""S3 ingestion: a batch from an S3 prefix or a manifest, and the drop folder (docs/ingestion.md, D10)."""
