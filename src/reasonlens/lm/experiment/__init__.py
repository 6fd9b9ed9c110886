"""The SFT-vs-RL experiment (``reasonlens lm experiment``): runner (stages, resume), stages (the work of
each), results (intervals, findings), report (the HTML page)."""
