"""Error types shared across subpackages."""


class ProbeError(ValueError):
    """Bad input to a value probe or to the TD / stats helpers it uses (shapes, rewards, indices)."""
