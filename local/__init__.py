"""The local stack (DESIGN D6): moto server, resource bootstrap, pipe and scheduler emulators."""
