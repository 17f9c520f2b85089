"""The run management: what runs the method (entry point and errors, device and torchrun,
training sessions, inference loops, checkpoints, atomic files, stage 2's map files, the
environment fingerprint). The method (tool/*.py) and the networks never import it."""
