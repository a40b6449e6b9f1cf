"""The wire, used on both sides: frames, connections, the transport and the mailbox."""
