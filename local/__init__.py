"""The local stack (docs/architecture.md D6): moto server, resource bootstrap, pipe and scheduler emulators."""
