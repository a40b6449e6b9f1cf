"""Code that runs inside an actor process: bootstrap, preload, the incarnation."""
