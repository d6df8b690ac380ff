"""One construct per concern; the two stacks only wire them together."""
