"""The pure decision pipeline: S1, S2, risk gates, planner, positions, ticks. Imports nothing that does I/O."""
