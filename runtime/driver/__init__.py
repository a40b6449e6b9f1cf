"""Code that runs in the script's process (the driver): the runtime, the tree, hosting."""
