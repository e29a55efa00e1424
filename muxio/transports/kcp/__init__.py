"""KCP over UDP: a pure ARQ core (wire-compatible with ikcp), sessions and a Transport."""
