"""The trader's side of the control socket: the server (framing, peers) and the command handlers."""
