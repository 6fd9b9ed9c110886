"""Training of the HRM family: the train config and trainer (the official loop), the ACT loss head,
AdamATan2 and sparse SignSGD, EMA, the LR schedule, checkpoint I/O (ours and the official format) and
seed 003's deep-supervision loop."""
