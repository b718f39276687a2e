"""``driftwarden demo``: synthetic traffic through an embedded broker into the real daemon."""
