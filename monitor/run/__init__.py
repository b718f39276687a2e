"""The daemon's runtime: the consumer loop, checkpoints and the order of commits, and replays."""
