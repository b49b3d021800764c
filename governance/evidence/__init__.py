"""Evidence packs: everything that explains one model version, in one verifiable file."""
