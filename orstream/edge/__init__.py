"""orstream's media edge: moves encoded media between sources, viewers and recorders; never imports Django."""
