"""Real HTTP stand-ins for the services credbot talks to, served on loopback."""
