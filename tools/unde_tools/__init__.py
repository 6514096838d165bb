"""Repository tooling: inventory loading, topology validation, lab inventory generation."""
