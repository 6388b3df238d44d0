"""What the machine is: its fingerprint, accelerators, environment checks and usable cores."""
