"""The CDK app's stacks, constructs and configuration."""
