"""golf-mini: Parameter Golf in miniature (byte-level LM on Shakespeare, scored in bits per byte)."""
